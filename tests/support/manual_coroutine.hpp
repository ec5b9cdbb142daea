// A C++20 coroutine type resumed only by hand, for tests that must fix the
// thread each step runs on: whichever thread calls `handle.resume()` runs the
// next step, with no scheduler involved.
#pragma once

#include <coroutine>
#include <exception>
#include <utility>

namespace ctxpool_test {

/// A coroutine that starts at once and is resumed only by hand.
struct manual_task {
  struct promise_type {
    manual_task get_return_object() {
      return manual_task{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { error = std::current_exception(); }
    std::exception_ptr error;
  };
  explicit manual_task(std::coroutine_handle<promise_type> h) : handle(h) {}
  manual_task(manual_task&& other) noexcept : handle(std::exchange(other.handle, {})) {}
  manual_task(const manual_task&) = delete;
  manual_task& operator=(const manual_task&) = delete;
  manual_task& operator=(manual_task&&) = delete;
  ~manual_task() {
    if (handle) handle.destroy();
  }
  std::coroutine_handle<promise_type> handle;
};

/// Suspends; whoever holds the handle resumes it, on whatever thread.
struct suspend_here {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  void await_resume() const noexcept {}
};

}  // namespace ctxpool_test
