// Bounded waits for the test suites: a regression to a hang must fail the
// test with a message naming what hung, never stall the suite until CTest's
// timeout (which says nothing about where).
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <thread>
#include <utility>

#include <doctest/doctest.h>

namespace ctxpool_test {

/// How long a test waits for something that should happen at once before
/// calling it a hang. Far above any real wait, because the sanitizer builds
/// run on a loaded 2-core CI machine; a correct test never comes close.
inline constexpr std::chrono::seconds hang_bound{60};

/// Waits for `future` at most `bound`, then returns its value (or rethrows
/// its exception). A miss fails the test (REQUIRE) with `what`.
template <class T>
T get_within(std::future<T>& future, const char* what = "a task did not finish (a hang?)",
             std::chrono::seconds bound = hang_bound) {
  REQUIRE_MESSAGE(future.wait_for(bound) == std::future_status::ready, what);
  return future.get();
}

/// Waits for `future` at most `bound` and fails the test (REQUIRE) with
/// `what` if it is not ready; does not take its value.
template <class T>
void require_within(const std::future<T>& future, std::chrono::seconds bound, const char* what) {
  REQUIRE_MESSAGE(future.wait_for(bound) == std::future_status::ready, what);
}

/// Runs `f` on a thread of its own and waits at most `bound` for it. For a
/// call that would block the test's own thread (`pool.wait()`, `stop()`, a
/// destructor): if it hangs, the test program prints `what` and aborts, the
/// one way to leave a thread that cannot be interrupted (CTest reports the
/// abort as a failure). An exception from `f` is rethrown here.
template <class F>
void finishes_within(const char* what, F&& f, std::chrono::seconds bound = hang_bound) {
  std::promise<void> done;
  std::future<void> finished = done.get_future();
  std::thread runner([&f, &done] {
    try {
      std::forward<F>(f)();
      done.set_value();
    } catch (...) {
      done.set_exception(std::current_exception());
    }
  });
  if (finished.wait_for(bound) != std::future_status::ready) {
    std::fprintf(stderr, "FAILED: %s did not return within %lld s (a hang)\n", what,
                 static_cast<long long>(bound.count()));
    std::fflush(stderr);
    std::abort();
  }
  runner.join();
  finished.get();
}

}  // namespace ctxpool_test
