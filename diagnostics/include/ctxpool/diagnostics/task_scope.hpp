// Marks one task in a hand-written worker loop, so that the residue detector
// (and the wipe) work without ctxpool's thread_pool.
//
//     void worker_loop(queue& q) {
//       while (auto job = q.pop()) {
//         ctxpool::diagnostics::task_scope task{"job", job->submit_site};
//         job->run();
//       }   // wipes lifetime::task slots; in diagnostic mode, records what the task
//           // left dirty and read before writing
//     }
//
// A `task_scope` does what `thread_pool` does around each task: it enters a
// fresh copy of the thread's current context, opens a `slot_wipe_scope`, and,
// when detection is on, gives the task an id and tells the detector that it
// begins and (after the wipe) ends. Teams can adopt detection in CI this way
// before they switch pools. With detection off it costs what the wipe costs.
//
// @par Thread safety
// A scope belongs to the thread that made it; scopes on different threads are
// independent. Scopes nest (a task run inline inside another).
//
// @par Lifetime
// Destroy it on the thread that made it, in reverse order of nesting (it is
// meant to be a local variable). `name` is copied.
#pragma once

#include <cstdint>
#include <source_location>
#include <string>
#include <string_view>

#include <ctxpool/context.hpp>
#include <ctxpool/hooks.hpp>
#include <ctxpool/thread_local.hpp>

namespace ctxpool::diagnostics {

/// Runs the enclosing block as one pool-like task; see the file comment.
class task_scope {
 public:
  /// Begins a task named `name` whose work was handed over at `submit_site`
  /// (pass the site you captured when the job was queued, if you have one).
  explicit task_scope(std::string_view name = {},
                      std::source_location submit_site = std::source_location::current());
  task_scope(const task_scope&) = delete;
  task_scope& operator=(const task_scope&) = delete;
  ~task_scope() = default;  // members end in order: wipe, task end, context

  /// The task's id; 0 when detection is off.
  [[nodiscard]] std::uint64_t id() const noexcept { return end_.info.id; }

 private:
  struct task_end {
    task_info info;
    task_observer* observer = nullptr;
    ~task_end() {
      if (observer != nullptr) observer->on_task_end(info);
    }
  };

  ::ctxpool::detail::fresh_context_scope context_;
  std::string name_;
  task_end end_;
  slot_wipe_scope slots_;  // last member: wiped first, before the task ends
};

}  // namespace ctxpool::diagnostics
