// Tests of what happens to a task's exception (<ctxpool/executor.hpp>): a
// submitted task's reaches its future, a posted task's the installed handler
// (or the default one, which prints it with the submit site).
#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <exception>
#include <future>
#include <stdexcept>
#include <string>
#include <utility>

#include "support/stderr_capture.hpp"

namespace {

using ctxpool_test::capture_stderr;

}  // namespace

TEST_CASE("a task's exception reaches its future") {
  ctxpool::thread_pool pool{2};
  auto f = pool.submit([]() -> int { throw std::invalid_argument("bad input"); });
  CHECK_THROWS_WITH_AS(f.get(), "bad input", std::invalid_argument);
}

TEST_CASE("a posted task's exception goes to the installed handler with its submit site") {
  ctxpool::thread_pool pool{2};
  std::promise<std::pair<std::string, unsigned>> reported;
  pool.set_exception_handler([&reported](std::exception_ptr error, const ctxpool::task_info& info) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      reported.set_value({e.what(), static_cast<unsigned>(info.submit_site.line())});
    }
  });
  const unsigned line = __LINE__ + 1;
  pool.post([] { throw std::runtime_error("posted failure"); });
  const auto [what, reported_line] = reported.get_future().get();
  CHECK(what == "posted failure");
  CHECK(reported_line == line);
  // The pool keeps working after a task threw.
  CHECK(pool.submit([] { return 5; }).get() == 5);
}

TEST_CASE("the default exception handler prints the exception and the submit site") {
  std::string output = capture_stderr([] {
    ctxpool::thread_pool pool{1};
    pool.post([] { throw std::runtime_error("nobody catches me"); });
    pool.wait();
    CHECK(pool.submit([] { return 1; }).get() == 1);  // still running
  });
  CHECK(output.find("nobody catches me") != std::string::npos);
  CHECK(output.find("task_exceptions_test.cpp") != std::string::npos);
}

TEST_CASE("an exception handler that throws is reported, not propagated") {
  std::string output = capture_stderr([] {
    ctxpool::thread_pool pool{1};
    pool.set_exception_handler([](std::exception_ptr, const ctxpool::task_info&) {
      throw std::logic_error("handler failed too");
    });
    pool.post([] { throw std::runtime_error("first failure"); });
    pool.wait();
    CHECK(pool.submit([] { return 2; }).get() == 2);
  });
  CHECK(output.find("first failure") != std::string::npos);
  CHECK(output.find("handler failed too") != std::string::npos);
  // Reported as the handler's failure, not as a task's or an Asio handler's.
  CHECK(output.find("exception handler installed with thread_pool::set_exception_handler threw "
                    "std::logic_error: handler failed too while handling std::runtime_error: "
                    "first failure from the task submitted at") != std::string::npos);
  CHECK(output.find("task_exceptions_test.cpp") != std::string::npos);
  CHECK(output.find("an Asio handler run on the pool threw") == std::string::npos);
}
