// Tests of the residue wipe after each pool task (<ctxpool/executor.hpp>):
// lifetime::task slots and watched plain thread_locals are reset, and
// lifetime::thread slots survive; a value that throws while being wiped is
// named in the termination message.
#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "support/child_process.hpp"

namespace {

ctxpool::thread_local_var<std::string> auth_token{"auth_token"};
ctxpool::thread_local_var<int> connection{"connection", ctxpool::lifetime::thread};
ctxpool::local_stack<int> request_stack{"request_stack"};

thread_local std::string legacy_user;  // a plain thread_local the test cannot wrap

}  // namespace

TEST_CASE("lifetime::task slots are wiped after a task returns and after it throws") {
  ctxpool::thread_pool pool{1};  // one worker: every task reuses the same thread
  pool.submit([] {
        auth_token.set("secret-of-task-1");
        request_stack.push(1);
      })
      .get();
  CHECK_FALSE(pool.submit([] { return auth_token.has_value(); }).get());
  CHECK(pool.submit([] { return request_stack.size(); }).get() == 0);

  auto failing = pool.submit([] {
    auth_token.set("secret-of-failing-task");
    throw std::runtime_error("boom");
  });
  CHECK_THROWS_AS(failing.get(), std::runtime_error);
  CHECK_FALSE(pool.submit([] { return auth_token.has_value(); }).get());
}

TEST_CASE("lifetime::thread slots survive across tasks on the same worker") {
  ctxpool::thread_pool pool{1};
  pool.submit([] { connection.set(99); }).get();
  CHECK(pool.submit([] { return connection.value_or(-1); }).get() == 99);
}

TEST_CASE("a watched plain thread_local is restored after each task") {
  auto watch =
      ctxpool::watch_thread_local("legacy_user", []() -> std::string& { return legacy_user; });
  ctxpool::thread_pool pool{1};
  pool.submit([] { legacy_user = "alice"; }).get();
  CHECK(pool.submit([] { return legacy_user; }).get().empty());
}

namespace {

/// A value whose destructor throws: a bug the wipe must name, not hide.
struct throws_on_destruction {
  bool armed = true;
  throws_on_destruction() = default;
  throws_on_destruction(const throws_on_destruction&) = default;
  throws_on_destruction(throws_on_destruction&& other) noexcept : armed(other.armed) {
    other.armed = false;
  }
  throws_on_destruction& operator=(const throws_on_destruction&) = default;
  throws_on_destruction& operator=(throws_on_destruction&& other) noexcept {
    armed = std::exchange(other.armed, false);
    return *this;
  }
  ~throws_on_destruction() noexcept(false) {
    if (armed) throw std::runtime_error("destructor threw");
  }
};

}  // namespace

TEST_CASE(
    "a slot value whose destructor throws during the wipe terminates with a message naming the slot") {
  // In a child process (forked while this test process has no other thread),
  // whose output the parent reads.
  ctxpool_test::scratch_dir dir;
  const auto result = ctxpool_test::run_forked(
      [] {
        static ctxpool::thread_local_var<throws_on_destruction> risky{"risky_slot"};
        ctxpool::thread_pool pool{1};
        pool.post([] { risky.set(throws_on_destruction{}); });
        pool.wait();
      },
      dir);
  CHECK(result.term_signal != 0);
  INFO("child's output: ", result.err);
  CHECK(result.err.find("thread-local slot 'risky_slot'") != std::string::npos);
  CHECK(result.err.find("threw from its destructor while being wiped") != std::string::npos);
}
