// `auth_token = x` must count as writing first although the assignment reads
// the old string, also when it assigns the value already there (the bytes do
// not change); a copy out of it is a read. Built three times: -O0 -g (an
// out-of-line operator= with debug information), -O2 without -g (the
// assignment inlined, no frames) and -O3 -g (the samples' build).
#include "plain_tls/monitor.hpp"

#include <doctest/doctest.h>

#include <string>
#include <thread>

#include "support.hpp"

using namespace plain_tls_test;

thread_local std::string auth_token;

__attribute__((noinline)) void login(const std::string& who) { auth_token = who; }
__attribute__((noinline)) void login_literal() {
  auth_token = "a literal long enough to leave the small buffer";
}
__attribute__((noinline)) bool anonymous_request() { return auth_token.empty(); }
__attribute__((noinline)) std::string copy_out() { return auth_token; }

TEST_CASE("plain_tls: assigning to a string left dirty is a write, reading it is a read") {
  pt::status st = start_in(pt::watch_mode::single_step);
  if (under_tsan) {
    CHECK_FALSE(st.watchpoints);
    return;
  }
  REQUIRE(st.watchpoints);
  auto token = find("auth_token");
  REQUIRE(token);
  std::thread([] { run_task([] { login("alice"); }); }).join();  // now watched
  std::thread([&] {
    pt::task_outcome copy_assign = run_task([] { login("bob"); });
    CHECK(left_dirty(copy_assign, *token));
    CHECK_FALSE(read_first(copy_assign, *token));

    pt::task_outcome same_again = run_task([] { login("bob"); });
    CHECK_FALSE(left_dirty(same_again, *token));  // the bytes are as they were
    CHECK_FALSE(read_first(same_again, *token));  // but it was written first

    pt::task_outcome literal = run_task([] { login_literal(); });
    CHECK_FALSE(read_first(literal, *token));

    pt::task_outcome copied = run_task([] { (void)copy_out(); });
    CHECK(read_first(copied, *token));

    auto site = read_first(run_task([] { (void)anonymous_request(); }), *token);
    CHECK_OR_RETURN(site);
    CHECK(site->pc() != 0);
    // Named through the caller chain when empty() is out of line (-O0).
    CHECK(std::string(site->function_name()).find("anonymous_request") != std::string::npos);
  }).join();
}
