// Task identity per thread: which task the calling thread runs (inline
// dispatch nests them), the detector's thread numbers and the pool's worker
// index, as the findings name them.
//
// @par Thread safety
// Everything here reads or writes the calling thread's state only.
#pragma once

#include <cstdint>
#include <source_location>
#include <string_view>

#include <ctxpool/diagnostics/findings.hpp>

namespace ctxpool::diagnostics::detail {

/// One task on this thread's stack of current tasks.
struct frame {
  std::uint64_t id;
  std::source_location submit_site;
  std::string_view name;  // the pool's; valid while the task runs
};

/// A task as the model sees it.
struct task_view {
  std::uint64_t id = 0;
  std::string_view name;
  std::source_location submit_site{};
};

/// Pushes `task` as the calling thread's current task; returns the new depth.
unsigned push_task(const frame& task) noexcept;

/// Pops the current task.
void pop_task() noexcept;

/// The number of tasks running nested on this thread (0: none).
[[nodiscard]] unsigned task_depth() noexcept;

/// The innermost task running on this thread, or null.
[[nodiscard]] const frame* current_frame() noexcept;

/// The detector's number for the calling thread (T1, T2, ...), given on first use.
[[nodiscard]] std::uint64_t thread_ordinal() noexcept;

/// The pool's worker index of the calling thread, or -1.
[[nodiscard]] std::int64_t worker_index() noexcept;
void set_worker_index(std::int64_t worker) noexcept;

/// Whether plain thread_local tracking is open for the outermost task here.
[[nodiscard]] bool plain_open() noexcept;
void set_plain_open(bool open) noexcept;

[[nodiscard]] task_view view_of(const frame& f) noexcept;

/// The task as a finding names it (no task: id 0).
[[nodiscard]] task_ref ref_of(const frame* f);
[[nodiscard]] task_ref ref_of(const task_view& task);

/// Counts a task scope that ended unseen by any observer (unobserved_tasks()).
void count_unobserved_scope() noexcept;

}  // namespace ctxpool::diagnostics::detail
