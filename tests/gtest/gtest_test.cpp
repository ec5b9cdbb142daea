// Tests of <ctxpool/diagnostics/gtest.hpp>, run by GoogleTest itself: the
// listener turns each finding made during a test into a failure of that test,
// with the finding as the message, and leaves clean tests alone.
#include <ctxpool/diagnostics/gtest.hpp>

#include <gtest/gtest-spi.h>

#include <string>

#include <ctxpool/executor.hpp>
#include <ctxpool/thread_local.hpp>

namespace diag = ctxpool::diagnostics;

namespace {

ctxpool::thread_local_var<std::string> api_key{"api_key"};

const ::testing::TestInfo& current_test() {
  return *::testing::UnitTest::GetInstance()->current_test_info();
}

// Ends the current test for `listener`; the failures it reports go to
// `failures` instead of failing this test.
void end_of_test(diag::gtest_listener& listener, ::testing::TestPartResultArray& failures) {
  ::testing::ScopedFakeTestPartResultReporter capture{
      ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures};
  listener.OnTestEnd(current_test());
}

// One worker, so the anonymous task runs where the login task left its key.
void login_then_anonymous_request() {
  ctxpool::thread_pool pool{1};
  pool.submit([] { api_key.set("k"); }).get();
  pool.submit([] { (void)api_key.has_value(); }).get();
  pool.join();
}

}  // namespace

TEST(gtest_listener, including_the_header_switches_detection_on) {
  // CTest runs this program with CTXPOOL_DIAGNOSTICS=off: the listener overrides it.
  EXPECT_TRUE(diag::enabled());
}

TEST(gtest_listener, a_stale_read_fails_the_test_with_the_finding_as_message) {
  // A listener of our own, driven by hand, so that its failure can be caught
  // here; it takes the finding, so the installed listener has nothing left.
  diag::gtest_listener listener;
  listener.OnTestStart(current_test());
  login_then_anonymous_request();

  ::testing::TestPartResultArray failures;
  end_of_test(listener, failures);
  ASSERT_EQ(failures.size(), 1);
  const ::testing::TestPartResult& failure = failures.GetTestPartResult(0);
  EXPECT_TRUE(failure.nonfatally_failed());
  EXPECT_NE(std::string(failure.message()).find("stale-read of 'api_key'"), std::string::npos)
      << failure.message();
  // Reported at the read's site: this file, not gtest.hpp.
  ASSERT_NE(failure.file_name(), nullptr);
  EXPECT_NE(std::string(failure.file_name()).find("gtest_test.cpp"), std::string::npos);
  EXPECT_GT(failure.line_number(), 0);
  // Withdrawn: it fails the test, it does not also set the exit status.
  EXPECT_TRUE(diag::findings().empty());
}

TEST(gtest_listener, a_clean_test_gets_no_failure) {
  diag::gtest_listener listener;
  listener.OnTestStart(current_test());
  {
    ctxpool::thread_pool pool{1};
    pool.submit([] {
          api_key.set("a");
          EXPECT_EQ(api_key.value(), "a");
        })
        .get();
    pool.submit([] {
          api_key.set("b");
          EXPECT_EQ(api_key.value(), "b");
        })
        .get();
    pool.join();
  }
  ::testing::TestPartResultArray failures;
  end_of_test(listener, failures);
  EXPECT_EQ(failures.size(), 0);
}

TEST(gtest_listener, findings_before_the_test_started_are_not_its_business) {
  login_then_anonymous_request();
  ASSERT_EQ(diag::findings().size(), 1u);
  diag::gtest_listener listener;
  listener.OnTestStart(current_test());
  ::testing::TestPartResultArray failures;
  end_of_test(listener, failures);
  EXPECT_EQ(failures.size(), 0);
  EXPECT_EQ(diag::findings().size(), 1u);  // still recorded, not taken
  diag::clear_findings();  // this test made it on purpose; the installed listener must not see it
}
