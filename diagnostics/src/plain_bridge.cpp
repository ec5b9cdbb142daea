// The plain thread_local bridge (plain_bridge.hpp).
#include "plain_bridge.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <ctxpool/detail/inspect.hpp>
#include <ctxpool/diagnostics/thread_cache.hpp>
#include <ctxpool/thread_local.hpp>
#include <fmt/format.h>

#include "model.hpp"
#include "plain_tls/monitor.hpp"
#include "suppressions.hpp"

namespace ctxpool::diagnostics::detail {
namespace {

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

constinit std::atomic<bool> plain_on{false};

/// Starts plain thread_local detection the first time a task begins (after
/// static initialisation, so that every CTXPOOL_THREAD_CACHE is registered);
/// prints its notice once. @returns whether discovery works.
bool plain_started() noexcept {
  plain_state& p = plain();
  if (p.done.load(std::memory_order_acquire)) return p.discovery;
  try {
    std::call_once(p.started, [&p] {
      const plain_tls::status st = plain_tls::start(
          [](std::string_view name) { return the_suppressions().is_thread_cache(name); });
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

/// Where the store at `pc` is, symbolised once per thread and address: the
/// same handler leaves the same variable dirty from the same store in every
/// request, and the model's fast path then costs no allocation.
const code_location* write_site_of(std::uintptr_t pc) {
  if (pc == 0) return nullptr;
  thread_local std::unordered_map<std::uintptr_t, code_location> located;
  auto it = located.find(pc);
  if (it == located.end()) it = located.emplace(pc, plain_tls::locate(pc)).first;
  return &it->second;
}

variable_desc describe_plain(std::uint32_t index) {
  const plain_tls::variable& var = plain_tls::describe(index);
  return {plain_key_bit | index, var.name, {}, var.module, var.size};
}

}  // namespace

void set_plain_checking(bool on) noexcept { plain_on.store(on, std::memory_order_relaxed); }

bool plain_task_begin() noexcept {
  if (!plain_on.load(std::memory_order_relaxed) || !plain_started()) return false;
  plain_tls::task_begin();
  return true;
}

bool plain_task_end(const frame& task) noexcept {
  plain_tls::task_outcome outcome;
  try {
    outcome = plain_tls::task_end();
  } catch (...) {
    return false;
  }
  const std::uint64_t lineage = ctxpool::detail::current_lineage();
  const bool alone = !plain().watchpoints;
  bool halt = false;
  // Reads first, as they happened: a task's own leave must not look like an
  // earlier step's.
  for (const auto& [index, where] : outcome.read_first) {
    const read_desc read{{{}, &where}, thread_ordinal(), worker_index()};
    if (model_read_first(describe_plain(index), read, view_of(task), lineage)) halt = true;
  }
  std::vector<std::string> watched;
  if (!outcome.left_dirty.empty()) {
    try {
      watched = ctxpool::detail::watched_thread_local_names();
    } catch (...) {
    }
  }
  for (std::size_t i = 0; i < outcome.left_dirty.size(); ++i) {
    const std::uint32_t index = outcome.left_dirty[i];
    const plain_tls::variable& var = plain_tls::describe(index);
    // A variable registered with watch_thread_local was restored when the
    // task ended (its bytes may still differ: a string's spare buffer); its
    // own residue finding says what the task did.
    if (std::any_of(watched.begin(), watched.end(), [&](const std::string& name) {
          return thread_cache_name_matches(name, var.name);
        })) {
      continue;
    }
    const code_location* written = nullptr;
    try {
      if (i < outcome.last_stores.size()) written = write_site_of(outcome.last_stores[i]);
    } catch (...) {  // out of memory: the finding says "an unknown site"
    }
    if (model_left_dirty(describe_plain(index), {{}, written}, view_of(task), lineage, alone)) {
      halt = true;
    }
  }
  return halt;
}

std::string plain_note(bool found) {
  plain_state& p = plain();
  if (!p.done.load(std::memory_order_acquire) || !p.watchpoints) return {};
  const plain_tls::watch_stats st = plain_tls::stats();
  if (st.variables_watched == 0 || (!found && st.unwatched_task_variables == 0)) return {};
  constexpr std::size_t named = 8;
  const std::vector<std::string> names = plain_tls::watched_names(named);
  std::string watched = fmt::format("'{}'", fmt::join(names, "', '"));
  if (st.variables_watched > named)
    watched += fmt::format(" and {} more", st.variables_watched - named);
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

}  // namespace ctxpool::diagnostics::detail
