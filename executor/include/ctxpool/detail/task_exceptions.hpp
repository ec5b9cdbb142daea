// Where the exceptions of `post`ed tasks and Asio handlers go: the handler a
// user installs, else a report on stderr.
//
// @par Thread safety
// `set` and `report` may be called concurrently from any thread; a report
// uses the handler installed when it starts.
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <mutex>

#include <ctxpool/hooks.hpp>

namespace ctxpool {

/// Receives the exception of a task started with `post` (or of an Asio handler
/// run on the pool), with the task's identity and submit site.
using exception_handler = std::function<void(std::exception_ptr, const task_info&)>;

namespace detail {

/// A pool's exception handler, and the default report when none is installed.
class task_exception_reporter {
 public:
  /// Installs `handler`; an empty one restores the default report.
  void set(exception_handler handler);
  /// Hands `error` to the installed handler, or prints it with the task's
  /// submit site; an exception the handler throws is printed, never
  /// propagated.
  void report(std::exception_ptr error, const task_info& info) noexcept;

 private:
  std::mutex mutex_;
  std::shared_ptr<const exception_handler> handler_;  // null: the default report
};

}  // namespace detail
}  // namespace ctxpool
