// Plain `thread_local` detection: the boundary between the detection model and
// the platform code that discovers, diffs and watches the program's own TLS.
//
// The model (detector.cpp) does not know about ELF, perf_event_open or DWARF;
// it calls these functions from its task observer on the worker thread and
// turns their outcome into findings. Everything behind this header lives in
// diagnostics/src/plain_tls/: discovery (ELF TLS segments and symbols), the
// per-task snapshot and diff, hardware watchpoints, access classification and
// symbolisation, each in a file of its own, with a portable fallback where
// the platform offers none of it.
//
// @par Thread safety
// `start` is called once, before tasks run. `task_begin` and `task_end` are
// called on the thread that runs the task, in pairs; `describe` and `stats`
// from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ctxpool::diagnostics::detail::plain_tls {

/// One discovered plain `thread_local` of the program's own modules.
struct variable {
  std::string name;    ///< demangled: "auth_token", "request_ctx()::depth"
  std::string module;  ///< path of the executable or shared library
  std::size_t size = 0;
};

/// Where an access happened, as precise as the debug information allows.
struct access_site {
  std::string function;  ///< innermost (inlined) function, demangled; may be empty
  std::string file;      ///< empty without debug information
  unsigned line = 0;
  std::uintptr_t pc = 0;  ///< the accessing instruction
};

/// What one task did to the variables, reported at its end.
struct task_outcome {
  /// Variables this task left changed from what they were when it began
  /// (first-use initialisation excluded).
  std::vector<std::uint32_t> left_dirty;
  /// Watched variables whose first access in this task was a read.
  std::vector<std::pair<std::uint32_t, access_site>> read_first;
};

/// Which parts are on, for the start-up notice and the summary.
struct status {
  bool discovery = false;    ///< variables can be found and diffed
  bool watchpoints = false;  ///< first accesses can be watched
  std::string notice;        ///< one line naming what is off and why; empty when all is on
};

/// Discovers the variables and probes watchpoints. `is_cache(name)` says which
/// variables are declared per-thread caches (never diffed nor watched).
status start(std::function<bool(std::string_view name)> is_cache);

/// The variable behind an index from a task_outcome.
const variable& describe(std::uint32_t index);

/// On the worker, right before the task's function runs.
void task_begin() noexcept;

/// On the worker, right after the task's function returned or threw.
task_outcome task_end();

}  // namespace ctxpool::diagnostics::detail::plain_tls
