// Linux: composes discovery, the per-thread snapshot, watchpoints and the
// access classifier behind monitor.hpp.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "access_classifier.hpp"
#include "instrumented_watch.hpp"
#include "monitor.hpp"
#include "symbolizer.hpp"
#include "tls_discovery.hpp"
#include "tls_snapshot.hpp"
#include "watchpoints.hpp"

namespace ctxpool::diagnostics::detail::plain_tls {

namespace {

// Variables beyond this index are diffed but never watched (the per-variable
// watch state is a fixed array so that workers read it without a lock).
constexpr std::uint32_t max_watchable = 1U << 14;

struct monitor_state {
  std::mutex mutex;  // discovery, start, appending to the watched list
  std::unique_ptr<tls_discovery> discovery;
  std::function<bool(std::string_view)> is_cache;
  std::atomic<const tls_layout*> layout{nullptr};
  std::atomic<bool> watching{false};
  std::atomic<bool> instrumented{
      false};  // first accesses come from the instrumented build's callbacks

  std::atomic<bool> watched[max_watchable] = {};
  std::atomic<std::uint32_t> watched_list[max_watchable] = {};
  std::atomic<std::uint32_t> watched_count{0};
  std::atomic<std::uint64_t> last_armed[max_watchable] = {};

  std::atomic<std::uint64_t> rotation{0};
  std::atomic<std::uint64_t> armed_seq{0};  // tasks that ran while something was watched
  std::atomic<std::uint64_t> tasks_armed{0};
  std::atomic<std::uint64_t> traps{0};
  std::atomic<std::uint64_t> unwatched{0};
  std::atomic<std::uint64_t> longest_run{0};
};

monitor_state& state() {
  static monitor_state* s = new monitor_state;  // never destroyed: workers may outlive main
  return *s;
}

std::atomic<int> forced_mode{-1};

watch_mode mode_from_environment(std::string& notice) {
  const char* env = std::getenv("CTXPOOL_PLAIN_TLS_WATCH");
  std::string_view v = env != nullptr ? env : "";
  if (v.empty() || v == "auto") return watch_mode::automatic;
  if (v == "hardware") return watch_mode::hardware;
  if (v == "single_step" || v == "single-step") return watch_mode::single_step;
  if (v == "instrumented") return watch_mode::instrumented;
  if (v == "off") return watch_mode::off;
  notice = "CTXPOOL_PLAIN_TLS_WATCH='" + std::string(v) +
           "' is not one of auto, hardware, instrumented, single-step, off; using auto. ";
  return watch_mode::automatic;
}

/// Per worker thread: the snapshot and the requests armed for the task.
struct thread_state {
  thread_snapshot snapshot;
  bool bound = false;
  bool broken = false;  // could not allocate its snapshot: this thread is not watched
  watch_request requests[max_watched_per_task];
  std::size_t armed = 0;
  // A task run inline inside another (a nested task_scope): only the
  // outermost begins and ends, so the inner one cannot clobber the snapshot.
  unsigned depth = 0;
};

thread_local std::unique_ptr<thread_state> this_thread_;

void note_max(std::atomic<std::uint64_t>& target, std::uint64_t value) noexcept {
  std::uint64_t seen = target.load(std::memory_order_relaxed);
  while (value > seen && !target.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

const tls_layout* current_layout(monitor_state& s) {
  const tls_layout* layout = s.layout.load(std::memory_order_acquire);
  if (layout != nullptr && tls_discovery::changed(*layout)) {
    std::lock_guard lock(s.mutex);
    layout = s.layout.load(std::memory_order_relaxed);
    if (tls_discovery::changed(*layout)) {
      layout = s.discovery->refresh();
      s.layout.store(layout, std::memory_order_release);
    }
  }
  return layout;
}

void arm_for_task(monitor_state& s, thread_state& t) noexcept {
  t.armed = 0;
  std::uint32_t watched = s.watched_count.load(std::memory_order_acquire);
  if (watched == 0 || !s.watching.load(std::memory_order_relaxed)) return;
  const tls_layout& layout = *t.snapshot.layout();
  std::size_t registers = watch_registers();
  std::size_t used = 0, chosen = 0;
  std::uint64_t first = s.rotation.load(std::memory_order_relaxed);
  for (std::uint32_t k = 0; k < watched && chosen < max_watched_per_task; ++k) {
    std::uint32_t var = s.watched_list[(first + k) % watched].load(std::memory_order_relaxed);
    unsigned char* addr = t.snapshot.address(var);
    if (addr == nullptr || var >= layout.variables.size()) continue;
    std::size_t need = registers_for(layout.variables[var].size);
    if (used + need > registers) break;
    used += need;
    t.requests[chosen++] = {var, addr, layout.variables[var].size, t.snapshot.before(var)};
  }
  // The next task starts where this one stopped, so every variable gets its turn.
  s.rotation.fetch_add(chosen > 0 ? chosen : 1, std::memory_order_relaxed);
  std::uint64_t seq = s.armed_seq.fetch_add(1, std::memory_order_relaxed) + 1;
  t.armed = arm_watchpoints(t.requests, chosen);
  if (t.armed > 0) s.tasks_armed.fetch_add(1, std::memory_order_relaxed);
  if (t.armed < watched) s.unwatched.fetch_add(watched - t.armed, std::memory_order_relaxed);
  for (std::size_t i = 0; i < t.armed; ++i) {
    std::uint64_t previous =
        s.last_armed[t.requests[i].var].exchange(seq, std::memory_order_relaxed);
    if (seq > previous + 1) note_max(s.longest_run, seq - previous - 1);
  }
}

void start_watching(monitor_state& s, const std::vector<std::uint32_t>& dirty) {
  for (std::uint32_t var : dirty) {
    if (var >= max_watchable || s.watched[var].load(std::memory_order_relaxed)) continue;
    std::lock_guard lock(s.mutex);
    if (s.watched[var].exchange(true)) continue;
    std::uint32_t n = s.watched_count.load(std::memory_order_relaxed);
    s.last_armed[var].store(s.armed_seq.load(std::memory_order_relaxed), std::memory_order_relaxed);
    s.watched_list[n].store(var, std::memory_order_relaxed);
    s.watched_count.store(n + 1, std::memory_order_release);
  }
}

/// Which watcher serves `mode`, in the order of preference: the instrumented
/// build where the code has it, hardware watchpoints where they fire,
/// single-stepping only when asked. `why` says why none does.
watcher choose_watcher(watch_mode mode, std::string& why) {
  if (mode == watch_mode::off) {
    install_watchpoints(watch_mode::off, why);
    return watcher::none;
  }
  const bool instrumented_code = instrumented::present();
  if (mode == watch_mode::instrumented || (mode == watch_mode::automatic && instrumented_code)) {
    install_watchpoints(watch_mode::off, why);  // drops a backend a previous start() installed
    if (instrumented_code) return watcher::instrumented;
    why =
        "CTXPOOL_PLAIN_TLS_WATCH=instrumented, but no module of this program was built with "
        "ctxpool_enable_residue_instrumentation";
    return watcher::none;
  }
  if (mode == watch_mode::automatic) mode = watch_mode::hardware;
  if (!install_watchpoints(mode, why)) {
    if (mode == watch_mode::hardware) why += "; no module of this program is instrumented";
    return watcher::none;
  }
  return mode == watch_mode::single_step ? watcher::single_step : watcher::hardware;
}

}  // namespace

void force_watch_mode(watch_mode mode) noexcept { forced_mode.store(static_cast<int>(mode)); }

status start(std::function<bool(std::string_view name)> is_cache) {
  monitor_state& s = state();
  std::lock_guard lock(s.mutex);
  if (!s.discovery) {
    s.is_cache = std::move(is_cache);
    s.discovery = std::make_unique<tls_discovery>(
        [&s](std::string_view name) { return s.is_cache && s.is_cache(name); });
    s.layout.store(s.discovery->refresh(), std::memory_order_release);
  }
  status st;
  st.discovery = true;
  std::string notice;
  int forced = forced_mode.load();
  watch_mode mode = forced > static_cast<int>(watch_mode::automatic)
                        ? static_cast<watch_mode>(forced)
                        : mode_from_environment(notice);
  std::string why;
  st.how = choose_watcher(mode, why);
  st.watchpoints = st.how != watcher::none;
  s.instrumented.store(st.how == watcher::instrumented, std::memory_order_release);
  s.watching.store(st.watchpoints, std::memory_order_release);
  if (!st.watchpoints) {
    notice += "plain thread_local reads are not watched (" + why +
              "): a variable a task leaves changed is reported as residue, which tasks read it "
              "stale is not. Full detection: build the CI job with the CMake function "
              "ctxpool_enable_residue_instrumentation (clang >= 14), or run where hardware "
              "watchpoints fire; CTXPOOL_PLAIN_TLS_WATCH=single-step traps every instruction "
              "(exact, about 25 us per instruction)";
  }
  st.notice = notice;
  return st;
}

const variable& describe(std::uint32_t index) {
  const tls_layout* layout = state().layout.load(std::memory_order_acquire);
  if (layout == nullptr || index >= layout->described.size()) {
    throw std::out_of_range("plain_tls::describe: no discovered variable has index " +
                            std::to_string(index));
  }
  return layout->described[index];
}

std::uint32_t variable_count() noexcept {
  const tls_layout* layout = state().layout.load(std::memory_order_acquire);
  return layout != nullptr ? static_cast<std::uint32_t>(layout->described.size()) : 0;
}

void task_begin() noexcept {
  monitor_state& s = state();
  if (s.layout.load(std::memory_order_acquire) == nullptr) return;  // start() not called
  try {
    if (!this_thread_) this_thread_ = std::make_unique<thread_state>();
    thread_state& t = *this_thread_;
    if (t.depth++ > 0 || t.broken) return;
    const tls_layout* layout = current_layout(s);
    const bool instrumented = s.instrumented.load(std::memory_order_relaxed);
    if (t.snapshot.layout() != layout) {
      t.snapshot.bind(*layout);
      if (instrumented) instrumented::bind(t.snapshot);
      t.bound = true;
    }
    t.snapshot.take();
    // Last: nothing of ours may run under the watchpoints.
    if (instrumented) {
      instrumented::arm(t.snapshot, s.watched, max_watchable);
      s.tasks_armed.fetch_add(1, std::memory_order_relaxed);
    } else {
      arm_for_task(s, t);
    }
  } catch (...) {
    if (this_thread_) {
      this_thread_->broken = true;
      this_thread_->bound = false;
    }
  }
}

task_outcome task_end() {
  task_outcome out;
  thread_state* t = this_thread_.get();
  if (t == nullptr || t->depth == 0 || --t->depth > 0 || !t->bound || t->broken) return out;
  monitor_state& s = state();
  auto classify = [&](const watch_hit& hit) {
    classified_access access = classify_access(hit, t->snapshot.changed(hit.var));
    if (access.kind == access_kind::read)
      out.read_first.emplace_back(hit.var, std::move(access.site));
  };
  if (s.instrumented.load(std::memory_order_relaxed)) {
    thread_local std::vector<watch_hit> hits;  // reused: no allocation per task once grown
    hits.clear();
    instrumented::disarm(hits);
    t->snapshot.diff(out.left_dirty);
    out.last_stores.reserve(out.left_dirty.size());
    // The return address into the storing code: the store is the instruction before.
    for (const std::uint32_t var : out.left_dirty) {
      const std::uintptr_t ret = instrumented::last_store(var);
      out.last_stores.push_back(ret != 0 ? ret - 1 : 0);
    }
    s.traps.fetch_add(hits.size(), std::memory_order_relaxed);
    for (const watch_hit& hit : hits) classify(hit);
  } else {
    watch_hit hits[max_watched_per_task];
    std::size_t n = disarm_watchpoints(hits, max_watched_per_task);
    t->armed = 0;
    t->snapshot.diff(out.left_dirty);
    if (n > 0) s.traps.fetch_add(n, std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) classify(hits[i]);
  }
  if (!out.left_dirty.empty() && s.watching.load(std::memory_order_relaxed))
    start_watching(s, out.left_dirty);
  return out;
}

code_location locate(std::uintptr_t pc) {
  if (pc == 0) return {};
  const symbol_info info = the_symbolizer().lookup(pc);
  return code_location(info.file, info.line, info.user_function, pc);
}

std::vector<std::string> watched_names(std::size_t max) {
  monitor_state& s = state();
  std::vector<std::string> names;
  const std::uint32_t n = s.watched_count.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n && names.size() < max; ++i) {
    names.push_back(describe(s.watched_list[i].load(std::memory_order_relaxed)).name);
  }
  return names;
}

watch_stats stats() noexcept {
  monitor_state& s = state();
  watch_stats out;
  out.tasks_armed = s.tasks_armed.load(std::memory_order_relaxed);
  out.traps = s.traps.load(std::memory_order_relaxed);
  out.variables_watched = s.watched_count.load(std::memory_order_acquire);
  out.unwatched_task_variables =
      s.unwatched.load(std::memory_order_relaxed) + single_step_budget_misses();
  out.longest_unwatched_run = s.longest_run.load(std::memory_order_relaxed);
  // A variable not armed since it became watched is a run still going on.
  std::uint64_t now = s.armed_seq.load(std::memory_order_relaxed);
  for (std::uint32_t i = 0; i < out.variables_watched; ++i) {
    std::uint32_t var = s.watched_list[i].load(std::memory_order_relaxed);
    std::uint64_t last = s.last_armed[var].load(std::memory_order_relaxed);
    if (now > last) out.longest_unwatched_run = std::max(out.longest_unwatched_run, now - last);
  }
  return out;
}

}  // namespace ctxpool::diagnostics::detail::plain_tls
