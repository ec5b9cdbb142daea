// Plain `thread_local` detection: the boundary between the detection model and
// the platform code that discovers, diffs and watches the program's own TLS.
//
// The model (model.hpp, fed by plain_bridge.cpp) does not know about ELF, perf_event_open or DWARF;
// it calls these functions from its task observer on the worker thread and
// turns their outcome into findings. Everything behind this header lives in
// diagnostics/src/plain_tls/: discovery (tls_discovery), the per-task
// snapshot and diff (tls_snapshot), the two ways of seeing first accesses --
// the instrumented build's load/store callbacks (instrumented_watch) and
// hardware watchpoints or single-stepping (watchpoints) --, access
// classification and symbolisation (access_classifier, symbolizer),
// composed by monitor_linux.cpp; monitor_fallback.cpp stands in where the
// platform offers none of it (start() then says so in its notice).
//
// What is a read, what is a write, and what is not residue: see
// access_classifier.hpp (the rule is stated there, next to its code).
//
// @par Thread safety
// `force_watch_mode` and `start` are called before tasks run (start once).
// `task_begin` and `task_end` are called on the thread that runs the task, in
// pairs, never nested on one thread; `describe` and `stats` from any thread.
//
// @par Lifetime
// Discovered variables are never forgotten, so an index stays valid for the
// life of the process (a variable of a module unloaded with `dlclose` keeps
// its description; it is simply no longer diffed nor watched).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ctxpool/diagnostics/findings.hpp>

namespace ctxpool::diagnostics::detail::plain_tls {

/// One discovered plain `thread_local` of the program's own modules.
struct variable {
  std::string name;    ///< demangled: "auth_token", "request_ctx()::depth"
  std::string module;  ///< path of the executable or shared library
  std::size_t size = 0;
};

/// What one task did to the variables, reported at its end.
struct task_outcome {
  /// Variables this task left changed from what they were when it began
  /// (first-use initialisation excluded).
  std::vector<std::uint32_t> left_dirty;
  /// Parallel to `left_dirty`: the address of the task's last instrumented
  /// store into that variable (the instrumented build), or 0 when unknown;
  /// `locate` names its source line.
  std::vector<std::uintptr_t> last_stores;
  /// Watched variables whose first access in this task was a read.
  std::vector<std::pair<std::uint32_t, code_location>> read_first;
};

/// What observes first accesses.
enum class watcher {
  none,          ///< nothing: left-dirty findings alone
  instrumented,  ///< the instrumented build's load/store callbacks (every variable, every task)
  hardware,      ///< debug registers (4 on x86-64: more dirty variables are watched in turn)
  single_step,   ///< tracing every instruction (asked for only)
};

/// Which parts are on, for the start-up notice and the summary.
struct status {
  bool discovery = false;    ///< variables can be found and diffed
  bool watchpoints = false;  ///< first accesses can be watched (by `how`)
  watcher how = watcher::none;
  std::string notice;  ///< one line naming what is off and why; empty when all is on
};

/// How first accesses are watched; `automatic` unless forced (tests, options).
enum class watch_mode {
  automatic,    ///< the instrumented build's callbacks if some module has them, else
                ///< hardware watchpoints if the probe at start() sees one fire, else
                ///< off (with one notice naming why and the way to full detection)
  hardware,     ///< hardware watchpoints if the probe sees one fire, else off
  single_step,  ///< x86-64 Linux: trace each instruction of a task until every watched
                ///< variable was touched; exact, but every instruction traps, so only
                ///< when asked for (never chosen automatically)
  off,          ///< dirty findings only (the notice says it was forced)
  /// Hardware watchpoints without the probe that checks they fire: only to
  /// measure arming and disarming where the debug registers do not work
  /// (bench/plain_tls_bench); finds nothing there.
  hardware_unprobed,
  /// The instrumented build's callbacks (ctxpool_enable_residue_instrumentation);
  /// off with a notice when no module of the program has them.
  instrumented,
};

/// Forces how first accesses are watched, before start(). The environment
/// variable CTXPOOL_PLAIN_TLS_WATCH (`auto`, `hardware`, `instrumented`,
/// `single-step` or `single_step`, `off`)
/// does the same for a whole process; this call wins over it, except that
/// forcing `automatic` hands the choice back to the environment.
void force_watch_mode(watch_mode mode) noexcept;

/// Discovers the variables and probes watchpoints. `is_cache(name)` says which
/// variables are declared per-thread caches (never diffed nor watched); it is
/// kept and asked again for modules loaded later. Called again (tests switch
/// watch modes), it keeps the first `is_cache` and the variables found, and
/// installs watchpoints anew for the mode now in force.
status start(std::function<bool(std::string_view name)> is_cache);

/// The variable behind an index from a task_outcome.
const variable& describe(std::uint32_t index);

/// The source location of the instruction at `pc` (a `last_stores` entry),
/// as a read site is named: the user's frame, inlined library code resolved
/// to its call line. Unknown where symbolisation is not built.
[[nodiscard]] code_location locate(std::uintptr_t pc);

/// Number of variables discovered so far (indexes are 0 .. count-1).
std::uint32_t variable_count() noexcept;

/// On the worker, right before the task's function runs.
void task_begin() noexcept;

/// On the worker, right after the task's function returned or threw.
task_outcome task_end();

/// Watchpoint counters for the summary line.
struct watch_stats {
  std::uint64_t tasks_armed = 0;        ///< tasks that had at least one watchpoint armed
  std::uint64_t traps = 0;              ///< watchpoint hits taken
  std::uint32_t variables_watched = 0;  ///< variables some task left dirty, now watched
  /// Sum over tasks of the watched variables that task could not arm (more
  /// dirty variables than debug registers): each is a task-long blind spot.
  std::uint64_t unwatched_task_variables = 0;
  /// Longest run of consecutive tasks (process-wide) during which one watched
  /// variable was not armed anywhere.
  std::uint64_t longest_unwatched_run = 0;
};

/// A consistent-enough copy of the counters (each is read atomically).
watch_stats stats() noexcept;

/// Names of the watched variables (some task left each dirty), in the order
/// they became watched, at most `max` of them.
std::vector<std::string> watched_names(std::size_t max);

}  // namespace ctxpool::diagnostics::detail::plain_tls
