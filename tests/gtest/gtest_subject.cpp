// A GoogleTest program as a user writes one: tests with no ctxpool line in
// them, and the integration header included once. CTest runs it (see
// CMakeLists.txt) and checks that the leaky test fails with the finding as
// its message, that the finding reaches the SARIF report, and that the clean
// test passes.
#include <ctxpool/diagnostics/gtest.hpp>

#include <string>

#include <ctxpool/executor.hpp>
#include <ctxpool/thread_local.hpp>

namespace {
ctxpool::thread_local_var<std::string> auth_token{"auth_token"};
}  // namespace

// The bug: the anonymous request reads the slot without setting it. On an
// ordinary pool it would run with the login's token.
TEST(leaky_request, anonymous_request_reads_previous_token) {
  ctxpool::thread_pool pool{1};
  pool.submit([] { auth_token.set("secret"); }).get();
  const bool has_token = pool.submit([] { return auth_token.has_value(); }).get();
  pool.join();
  EXPECT_FALSE(has_token);  // the wipe holds: only the listener can fail this test
}

TEST(clean_request, sets_before_reading) {
  ctxpool::thread_pool pool{1};
  pool.submit([] { auth_token.set("a"); }).get();
  const std::string seen = pool.submit([] {
                                 auth_token.set("b");
                                 return auth_token.value();
                               })
                               .get();
  pool.join();
  EXPECT_EQ(seen, "b");
}
