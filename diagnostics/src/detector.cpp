// The residue detector: task identity per thread, the hooks that feed the
// detection model (model.cpp) from thread_local_var slots and from plain
// thread_locals (plain_tls/), findings with deduplication and suppressions,
// leak accounting, configuration from CTXPOOL_DIAGNOSTICS and the exit status.
#include <ctxpool/diagnostics.hpp>

#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <ctxpool/detail/map.hpp>
#include <ctxpool/detail/state.hpp>
#include <ctxpool/diagnostics/thread_cache.hpp>
#include <ctxpool/thread_local.hpp>
#include <fmt/format.h>

#include "detector.hpp"
#include "default_suppressions.hpp"
#include "finding_kinds.hpp"
#include "plain_tls/monitor.hpp"

namespace ctxpool::diagnostics {
namespace detail {
namespace {

// ---- per-thread task identity -------------------------------------------------

/// One task on this thread's stack of current tasks (inline dispatch nests).
struct frame {
  std::uint64_t id;
  std::source_location submit_site;
  std::string_view name;  // the pool's; valid while the task runs
};

inline constexpr unsigned max_depth = 32;  // deeper nesting is attributed to frame 31

/// Trivially destructible, so that hooks called while the thread's other
/// thread_locals are being destroyed still find it intact.
struct thread_state {
  std::uint64_t ordinal;  // the detector's thread number, 0 until first needed
  std::int64_t worker;    // the pool's worker index, or -1
  unsigned depth;
  bool plain_open;        // plain_tls::task_begin ran for the outermost task
  frame stack[max_depth];
};
constinit thread_local thread_state ts{0, -1, 0, false, {}};

constinit std::atomic<std::uint64_t> next_thread_ordinal{1};
constinit std::atomic<std::uint64_t> occurrence_clock{0};
constinit std::atomic<std::uint64_t> unobserved_scopes{0};

std::uint64_t thread_ordinal() noexcept {
  if (ts.ordinal == 0) ts.ordinal = next_thread_ordinal.fetch_add(1, std::memory_order_relaxed);
  return ts.ordinal;
}

const frame* current_frame() noexcept {
  if (ts.depth == 0) return nullptr;
  return &ts.stack[std::min(ts.depth, max_depth) - 1];
}

task_view view_of(const frame& f) noexcept { return {f.id, f.name, f.submit_site}; }

task_ref ref_of(const frame* f) {
  if (f == nullptr) return {};
  return {f->id, std::string(f->name), f->submit_site};
}

/// The context lineage the running code continues: the steps of one
/// coroutine (and work posted from one context) share it.
std::uint64_t current_lineage() noexcept {
  const ctxpool::detail::context_box* box = ctxpool::detail::tls.current;
  return box == nullptr ? 0 : box->lineage;
}

constinit std::atomic<bool> detection_on{false};
constinit std::atomic<bool> leaks_on{false};
constinit std::atomic<bool> plain_on{false};  // plain thread_locals checked (option)

// ---- plain thread_locals ----------------------------------------------------------

struct plain_state {
  std::once_flag started;
  std::atomic<bool> done{false};  // set after `started` ran: skips call_once per task
  bool discovery = false;         // written once under `started`
  bool watchpoints = false;
  plain_tls::watcher how = plain_tls::watcher::none;
};
plain_state& plain() {
  static plain_state* instance = new plain_state;  // never destroyed
  return *instance;
}

/// Names declared with CTXPOOL_THREAD_CACHE.
struct cache_registry {
  std::mutex mutex;
  std::vector<std::string> names;
};
cache_registry& declared_caches() {
  static cache_registry* instance = new cache_registry;  // never destroyed
  return *instance;
}

/// Starts plain thread_local detection the first time a task begins (after
/// static initialisation, so that every CTXPOOL_THREAD_CACHE is registered);
/// prints its notice once. @returns whether discovery works.
bool plain_started() noexcept {
  plain_state& p = plain();
  if (p.done.load(std::memory_order_acquire)) return p.discovery;
  try {
    std::call_once(p.started, [&p] {
      const plain_tls::status st = plain_tls::start(
          [](std::string_view name) { return is_thread_cache(name); });
      p.discovery = st.discovery;
      p.watchpoints = st.watchpoints;
      p.how = st.how;
      if (!st.notice.empty()) {
        std::fprintf(stderr, "ctxpool: %s\n", st.notice.c_str());
        std::fflush(stderr);
      }
      p.done.store(true, std::memory_order_release);
    });
  } catch (...) {
    return false;
  }
  return p.discovery;
}

void plain_task_end(const frame& task) noexcept {
  plain_tls::task_outcome outcome;
  try {
    outcome = plain_tls::task_end();
  } catch (...) {
    return;
  }
  const std::uint64_t lineage = current_lineage();
  const bool alone = !plain().watchpoints;
  // Reads first, as they happened: a task's own leave must not look like an
  // earlier step's.
  for (const auto& [index, where] : outcome.read_first) {
    const plain_tls::variable& var = plain_tls::describe(index);
    const slot_desc slot{plain_key_bit | index, var.name, {}, var.module, var.size};
    model_read_first(slot, {{}, &where, thread_ordinal(), ts.worker}, view_of(task), lineage);
  }
  std::vector<std::string> watched;
  if (!outcome.left_dirty.empty()) {
    try {
      watched = ctxpool::detail::watched_thread_local_names();
    } catch (...) {
    }
  }
  for (const std::uint32_t index : outcome.left_dirty) {
    const plain_tls::variable& var = plain_tls::describe(index);
    // A variable registered with watch_thread_local was restored when the
    // task ended (its bytes may still differ: a string's spare buffer); its
    // own residue finding says what the task did.
    if (std::any_of(watched.begin(), watched.end(), [&](const std::string& name) {
          return thread_cache_name_matches(name, var.name);
        })) {
      continue;
    }
    const slot_desc slot{plain_key_bit | index, var.name, {}, var.module, var.size};
    model_left_dirty(slot, {}, view_of(task), lineage, alone);
  }
}

// ---- recording --------------------------------------------------------------------

bool glob(const std::string& pattern, std::string_view text) {
  const std::string subject(text);
  if (::fnmatch(pattern.c_str(), subject.c_str(), 0) == 0) return true;
  const std::size_t slash = subject.rfind('/');
  return slash != std::string::npos &&
         ::fnmatch(pattern.c_str(), subject.c_str() + slash + 1, 0) == 0;
}

bool matches(const suppression& rule, const finding& f) {
  if (!kind_matches(rule.kind, f.kind)) return false;
  if (!f.variable.empty() && glob(rule.pattern, f.variable)) return true;
  for (const code_location* site :
       {&f.site, &f.write_site, &f.task.submit_site, &f.writer.submit_site}) {
    if (site->line() != 0 && glob(rule.pattern, site->file_name())) return true;
  }
  return false;
}

std::string site_key(const code_location& site) {
  if (site.line() == 0) return fmt::format("{}:{:x}", site.function_name(), site.pc());
  return fmt::format("{}:{}:{}:{}", site.file_name(), site.line(), site.column(),
                     site.function_name());
}

[[noreturn]] void halt(int exitcode);

// ---- the observer -------------------------------------------------------------------

class detector final : public residue_observer, public task_observer {
 public:
  // task_observer
  void on_thread_start(std::size_t worker_index) noexcept override {
    ts.worker = static_cast<std::int64_t>(worker_index);
    (void)thread_ordinal();
  }
  void on_thread_stop(std::size_t /*worker_index*/) noexcept override {}
  void on_task_begin(const task_info& task) noexcept override {
    if (ts.depth < max_depth) ts.stack[ts.depth] = {task.id, task.submit_site, task.name};
    ++ts.depth;
    // Plain thread_locals are diffed per outermost task: a task run inline
    // inside another is part of it.
    if (ts.depth == 1 && plain_on.load(std::memory_order_relaxed) && plain_started()) {
      plain_tls::task_begin();
      ts.plain_open = true;
    }
  }
  void on_task_end(const task_info& /*task*/) noexcept override {
    if (ts.depth == 1 && ts.plain_open) {
      ts.plain_open = false;
      plain_task_end(*current_frame());
    }
    if (ts.depth > 0) --ts.depth;
  }

  // residue_observer
  void on_read_first(const slot_view& slot, std::source_location where) noexcept override {
    const frame* task = current_frame();
    // Not a task the detector was told about (a bare task_slot_scope, or a
    // pool built before detection was on): not attributable to a task.
    if (task == nullptr || slot.scope_depth > ts.depth) return;
    model_read_first({slot.id, slot.name, slot.type_name, {}, 0},
                     {where, nullptr, thread_ordinal(), ts.worker}, view_of(*task),
                     current_lineage());
  }

  void on_left_dirty(const slot_view& slot, std::source_location last_write) noexcept override {
    const frame* task = current_frame();
    if (task == nullptr || slot.scope_depth > ts.depth) return;
    model_left_dirty({slot.id, slot.name, slot.type_name, {}, 0}, last_write, view_of(*task),
                     current_lineage(), /*alone=*/false);
  }

  void on_task_slots_end(unsigned depth) noexcept override {
    if (ts.depth < depth) unobserved_scopes.fetch_add(1, std::memory_order_relaxed);
  }

  void on_watched_residue(const slot_view& slot) noexcept override {
    const frame* task = current_frame();
    try {
      finding f;
      f.kind = finding_kind::residue;
      f.variable = std::string(slot.name);
      f.type = std::string(slot.type_name);
      f.task = ref_of(task);
      f.thread = thread_ordinal();
      f.worker = ts.worker;
      state& s = the_state();
      std::unique_lock lock(s.mutex);
      (void)record_locked(lock, std::move(f));
    } catch (...) {
    }
  }

  void on_value_created(const void* value, std::string_view var_name,
                        std::string_view type_name) noexcept override {
    if (!leaks_on.load(std::memory_order_relaxed)) return;
    try {
      task_ref task = ref_of(current_frame());
      const std::uint64_t thread = thread_ordinal();
      state& s = the_state();
      std::lock_guard lock(s.leak_mutex);
      const std::string* var = &*s.names.emplace(var_name).first;
      const std::string* type = &*s.names.emplace(type_name).first;
      s.values.insert_or_assign(value, value_rec{var, type, std::move(task), thread});
    } catch (...) {
    }
  }
  void on_value_destroyed(const void* value) noexcept override {
    if (!leaks_on.load(std::memory_order_relaxed)) return;
    state& s = the_state();
    std::lock_guard lock(s.leak_mutex);
    s.values.erase(value);
  }
  void on_context_created(const void* ctx) noexcept override {
    if (!leaks_on.load(std::memory_order_relaxed)) return;
    try {
      task_ref task = ref_of(current_frame());
      const std::uint64_t thread = thread_ordinal();
      state& s = the_state();
      std::lock_guard lock(s.leak_mutex);
      s.contexts.insert_or_assign(ctx, context_rec{std::move(task), thread});
    } catch (...) {
    }
  }
  void on_context_destroyed(const void* ctx) noexcept override {
    if (!leaks_on.load(std::memory_order_relaxed)) return;
    state& s = the_state();
    std::lock_guard lock(s.leak_mutex);
    s.contexts.erase(ctx);
  }
};

detector& the_detector() {
  static detector* instance = new detector;  // never destroyed: worker threads may outlive statics
  return *instance;
}

bool run_is_clean(const state& s) noexcept { return s.list.empty() && s.handled.empty(); }

/// How plain thread_locals were watched: said when findings were made, or
/// when some went unwatched (more dirty variables than debug registers), since
/// a blind spot can hide a stale read.
std::string plain_note(bool found) {
  plain_state& p = plain();
  if (!p.done.load(std::memory_order_acquire) || !p.watchpoints) return {};
  const plain_tls::watch_stats st = plain_tls::stats();
  if (st.variables_watched == 0 || (!found && st.unwatched_task_variables == 0)) return {};
  constexpr std::size_t named = 8;
  const std::vector<std::string> names = plain_tls::watched_names(named);
  std::string watched = fmt::format("'{}'", fmt::join(names, "', '"));
  if (st.variables_watched > named) watched += fmt::format(" and {} more", st.variables_watched - named);
  if (p.how == plain_tls::watcher::instrumented) {
    return fmt::format(
        "plain thread_locals (instrumented build): {} watched in every task ({} task(s), {} first "
        "access(es) seen); no blind spot among instrumented code, reads by code that is not "
        "instrumented are not seen",
        watched, st.tasks_armed, st.traps);
  }
  const char* cause = p.how == plain_tls::watcher::hardware
                          ? "more dirty variables than debug registers, watched in turn"
                          : "more than 16 dirty variables, or the 20,000-instruction single-step "
                            "budget ran out first";
  return fmt::format(
      "plain thread_locals: {} watched in {} task(s), {} trap(s); {} task-variable blind "
      "spot(s) ({}), longest unwatched run {} task(s)",
      watched, st.tasks_armed, st.traps, st.unwatched_task_variables, cause,
      st.longest_unwatched_run);
}

/// Pending and taken findings as one list for the summary and the report;
/// a finding taken and then seen again is merged into one, counts added.
std::vector<finding> reported_findings(const state& s) {
  std::vector<finding> all = s.handled;
  std::unordered_map<std::string, std::size_t> at;
  for (std::size_t i = 0; i < all.size(); ++i) at.emplace(dedup_key(all[i]), i);
  for (const finding& f : s.list) {
    const auto [it, inserted] = at.try_emplace(dedup_key(f), all.size());
    if (inserted) {
      all.push_back(f);
    } else {
      all[it->second].count += f.count;
      all[it->second].left_dirty = std::max(all[it->second].left_dirty, f.left_dirty);
    }
  }
  return all;
}

// ---- the end of the run -----------------------------------------------------------

/// Prints the SUMMARY lines and writes the report, once.
/// @returns whether anything was found.
bool finish(bool leak_check) noexcept {
  try {
    if (leak_check && leaks_on.load(std::memory_order_relaxed)) check_leaks();
    state& s = the_state();
    std::lock_guard lock(s.mutex);
    model_refresh_locked(s);
    const bool found = !s.list.empty();
    if (s.finished) return found;
    s.finished = true;
    run_summary run{reported_findings(s), s.suppressions, plain_note(!run_is_clean(s))};
    const std::string summary = format_summary(run);
    std::fwrite(summary.data(), 1, summary.size(), stderr);
    std::fflush(stderr);
    if (!s.report_path.empty() && !write_report(s.report_path, s.opts.format, s.opts.srcroot, run)) {
      std::fprintf(stderr, "ctxpool: cannot write report '%s': %s\n", s.report_path.c_str(),
                   std::strerror(errno));
    }
    return found;
  } catch (...) {
    return true;
  }
}

[[noreturn]] void halt(int exitcode) {
  finish(false);
  std::fflush(nullptr);
  ::_exit(exitcode);
}

void at_exit() noexcept {
  state& s = the_state();
  int exitcode = 0;
  {
    std::lock_guard lock(s.mutex);
    exitcode = s.opts.exitcode;
  }
  if (finish(true) && exitcode != 0) {
    std::fflush(nullptr);
    ::_exit(exitcode);
  }
}

std::string resolve_report_path(const std::string& path) {
  std::string result;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 1 < path.size() && path[i + 1] == 'p') {
      result += std::to_string(::getpid());
      ++i;
    } else {
      result += path[i];
    }
  }
  return result;
}

std::vector<suppression> read_suppressions_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw config_error(fmt::format(
        "CTXPOOL_DIAGNOSTICS: cannot read suppressions file '{}': {}", path,
        std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_suppressions(text.str(), path);
}

void enable_now(options opts);

/// Reads CTXPOOL_DIAGNOSTICS once; a bad value ends the process.
bool init_from_environment() noexcept {
  const char* spec = std::getenv("CTXPOOL_DIAGNOSTICS");
  if (spec == nullptr) return true;
  try {
    options opts = parse_options(spec);
    if (opts.mode == mode::off) return true;
    enable_now(std::move(opts));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ctxpool: %s\nctxpool: CTXPOOL_DIAGNOSTICS='%s' is invalid; exiting\n",
                 e.what(), spec);
    std::fflush(stderr);
    std::_Exit(2);
  }
  return true;
}

void ensure_initialized() noexcept {
  [[maybe_unused]] static const bool done = init_from_environment();
}

// Reads the environment before main, so detection is active before the first
// task of any pool, even one built in a static initializer elsewhere (which
// reaches ensure_initialized through enabled() first).
[[maybe_unused]] const bool initialized_at_startup = (ensure_initialized(), true);

/// Every value reachable from the map rooted at `node`.
void collect_values(const ctxpool::detail::map_node* node,
                    std::unordered_set<const void*>& out) {
  if (node == nullptr) return;
  const int leaves = std::popcount(node->leaves);
  const int children = std::popcount(node->children);
  for (int i = 0; i < leaves; ++i) out.insert(node->slots()[i]);
  for (int i = 0; i < children; ++i) {
    collect_values(static_cast<const ctxpool::detail::map_node*>(node->slots()[leaves + i]), out);
  }
}

}  // namespace

kind_total total_of(const std::vector<finding>& all, finding_kind kind) noexcept {
  kind_total total;
  for (const finding& f : all) {
    if (f.kind != kind) continue;
    ++total.unique;
    total.occurrences += f.count;
  }
  return total;
}

state& the_state() {
  static state* instance = new state;  // never destroyed: hooks may run during exit
  return *instance;
}

std::uint64_t next_occurrence() noexcept {
  return occurrence_clock.fetch_add(1, std::memory_order_relaxed) + 1;
}

std::uint64_t last_occurrence() noexcept {
  return occurrence_clock.load(std::memory_order_relaxed);
}

std::string dedup_key(const finding& f) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{}", to_string(f.kind), f.variable, f.type,
                     site_key(f.site), site_key(f.write_site), site_key(f.task.submit_site),
                     site_key(f.writer.submit_site));
}

placement record_locked(std::unique_lock<std::mutex>& lock, finding f) {
  state& s = the_state();
  for (std::size_t i = 0; i < s.suppressions.size(); ++i) {
    if (matches(s.suppressions[i].rule, f)) {
      ++s.suppressions[i].hits;
      return {s.generation.load(std::memory_order_relaxed), i, true};
    }
  }
  if (f.last_seen == 0) f.last_seen = next_occurrence();
  const auto [it, inserted] = s.index.try_emplace(dedup_key(f), s.list.size());
  if (!inserted) {
    finding& earlier = s.list[it->second];
    earlier.count += f.count;
    earlier.last_seen = std::max(earlier.last_seen, f.last_seen);
    return {s.generation.load(std::memory_order_relaxed), it->second, false};
  }
  const placement where{s.generation.load(std::memory_order_relaxed), s.list.size(), false};
  s.list.push_back(f);
  if (s.opts.print) {
    const std::string text = format_finding(f);
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
  }
  if (s.opts.halt_on_error) {
    const int code = s.opts.exitcode;
    lock.unlock();
    halt(code);
  }
  return where;
}

bool is_thread_cache(std::string_view name) {
  // State of code the program does not own: ctxpool's own, the C++ runtime's,
  // Boost's and test frameworks' (doctest's and GoogleTest's assertion state
  // changes in every task that checks something).
  for (std::string_view prefix : {"ctxpool::", "std::", "__gnu_cxx::", "__cxxabiv1::", "boost::",
                                  "fmt::", "doctest::", "testing::", "__"}) {
    if (name.starts_with(prefix)) return true;
  }
  {
    cache_registry& declared = declared_caches();
    std::lock_guard lock(declared.mutex);
    for (const std::string& cache : declared.names) {
      if (thread_cache_name_matches(cache, name)) return true;
    }
  }
  state& s = the_state();
  std::lock_guard lock(s.mutex);
  if (s.opts.default_suppressions) {
    for (const std::string_view known : default_thread_caches) {
      if (glob(std::string(known), name)) return true;
    }
  }
  for (suppression_count& rule : s.suppressions) {
    if (rule.rule.kind == thread_cache_kind && glob(rule.rule.pattern, name)) {
      ++rule.hits;
      return true;
    }
  }
  return false;
}

}  // namespace detail

// ---- public API -------------------------------------------------------------------------

bool enabled() noexcept {
  detail::ensure_initialized();
  return detail::detection_on.load(std::memory_order_acquire);
}

task_observer* pool_observer() noexcept {
  return enabled() ? &detail::the_detector() : nullptr;
}

std::uint64_t next_task_id() noexcept {
  static constinit std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

void enable(options opts) {
  detail::ensure_initialized();
  if (opts.mode == mode::off) {
    disable();
    return;
  }
  detail::enable_now(std::move(opts));
}

namespace detail {
namespace {

void enable_now(options opts) {
  std::vector<detail::suppression_count> rules;
  if (!opts.suppressions_path.empty()) {
    for (auto& rule : detail::read_suppressions_file(opts.suppressions_path)) {
      rules.push_back({std::move(rule), 0});
    }
  }
  for (const auto& rule : opts.suppressions) rules.push_back({rule, 0});

  std::string report_path;
  if (!opts.report_path.empty()) {
    report_path = detail::resolve_report_path(opts.report_path);
    // Checked now, written at exit. Not truncated: the processes of one test
    // run add to the same report.
    std::FILE* report = std::fopen(report_path.c_str(), "a");
    if (report == nullptr) {
      throw config_error(fmt::format("CTXPOOL_DIAGNOSTICS: cannot write report '{}': {}",
                                     report_path, std::strerror(errno)));
    }
    std::fclose(report);
  }

  detail::state& s = detail::the_state();
  bool register_handler = false;
  {
    std::lock_guard lock(s.mutex);
    s.report_path = std::move(report_path);
    s.suppressions = std::move(rules);
    s.generation.fetch_add(1, std::memory_order_release);
    s.opts = std::move(opts);
    s.finished = false;
    detail::model_forget_locked(s);
    register_handler = !std::exchange(s.exit_handler_registered, true);
    detail::leaks_on.store(s.opts.leaks, std::memory_order_relaxed);
    detail::plain_on.store(s.opts.thread_locals, std::memory_order_relaxed);
  }
  if (register_handler) std::atexit([] { detail::at_exit(); });
  set_residue_observer(&detail::the_detector());
  detail::detection_on.store(true, std::memory_order_release);
}

}  // namespace
}  // namespace detail

void disable() noexcept {
  detail::ensure_initialized();
  detail::detection_on.store(false, std::memory_order_release);
  set_residue_observer(nullptr);
  detail::leaks_on.store(false, std::memory_order_relaxed);
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.leak_mutex);
  s.values.clear();
  s.contexts.clear();
}

options current_options() {
  detail::ensure_initialized();
  options result;
  if (!enabled()) {
    result.mode = mode::off;
    return result;
  }
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.mutex);
  result = s.opts;
  return result;
}

std::vector<finding> findings() {
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.mutex);
  detail::model_refresh_locked(s);
  return s.list;
}

namespace detail {
namespace {

/// Hands the pending findings `taken` to the caller: they stay in the report
/// (handled) but no longer decide the exit status.
void hand_over_locked(state& s, const std::vector<finding>& taken) {
  model_taken_locked(s, taken);
  s.handled.insert(s.handled.end(), taken.begin(), taken.end());
  s.index.clear();
  for (std::size_t i = 0; i < s.list.size(); ++i) s.index.emplace(dedup_key(s.list[i]), i);
  s.generation.fetch_add(1, std::memory_order_release);
}

}  // namespace
}  // namespace detail

std::vector<finding> take_findings() {
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.mutex);
  detail::model_refresh_locked(s);
  std::vector<finding> result;
  result.swap(s.list);
  detail::hand_over_locked(s, result);
  return result;
}

void clear_findings() noexcept {
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.mutex);
  s.list.clear();
  s.handled.clear();
  s.index.clear();
  detail::model_forget_locked(s);
  s.generation.fetch_add(1, std::memory_order_release);
  for (auto& rule : s.suppressions) rule.hits = 0;
}

std::uint64_t finding_mark() noexcept { return detail::last_occurrence(); }

std::vector<finding> take_findings_since(std::uint64_t mark) {
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.mutex);
  detail::model_refresh_locked(s);
  std::vector<finding> taken;
  std::vector<finding> kept;
  for (finding& f : s.list) (f.last_seen > mark ? taken : kept).push_back(std::move(f));
  s.list = std::move(kept);
  detail::hand_over_locked(s, taken);
  return taken;
}

std::uint64_t unobserved_tasks() noexcept {
  return detail::unobserved_scopes.load(std::memory_order_relaxed);
}

void check_leaks() {
  std::vector<finding> found;
  {
    detail::state& s = detail::the_state();
    std::lock_guard lock(s.leak_mutex);
    std::unordered_set<const void*> held;
    for (const auto& [ctx, rec] : s.contexts) {
      const auto* box = static_cast<const ctxpool::detail::context_box*>(ctx);
      detail::collect_values(box->root, held);
    }
    for (const auto& [value, rec] : s.values) {
      if (held.contains(value)) continue;
      finding f;
      f.kind = finding_kind::leaked_value;
      f.variable = *rec.variable;
      f.type = *rec.type;
      f.task = rec.task;
      f.thread = rec.thread;
      found.push_back(std::move(f));
    }
    for (const auto& [ctx, rec] : s.contexts) {
      if (rec.task.id == 0) continue;  // made outside any task: nobody's residue
      finding f;
      f.kind = finding_kind::leaked_context;
      f.variable = "<context>";
      f.type = "ctxpool::context";
      f.task = rec.task;
      f.thread = rec.thread;
      found.push_back(std::move(f));
    }
  }
  detail::state& s = detail::the_state();
  std::unique_lock lock(s.mutex);
  for (finding& f : found) (void)detail::record_locked(lock, std::move(f));
}

void declare_thread_cache(std::string_view name) {
  detail::cache_registry& declared = detail::declared_caches();
  std::lock_guard lock(declared.mutex);
  declared.names.emplace_back(name);
}

bool thread_cache_name_matches(std::string_view declared, std::string_view discovered) noexcept {
  if (declared == discovered) return true;
  // Declared unqualified (or partly qualified) inside its namespace or function.
  return discovered.size() > declared.size() + 2 && discovered.ends_with(declared) &&
         discovered.substr(discovered.size() - declared.size() - 2, 2) == "::";
}

}  // namespace ctxpool::diagnostics
