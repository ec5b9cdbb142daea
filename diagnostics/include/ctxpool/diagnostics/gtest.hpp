// GoogleTest integration: fail each test that produced a finding, with no line
// in the tests themselves.
//
//     #include <ctxpool/diagnostics/gtest.hpp>   // in any one file of the test program
//
//     TEST(handlers, do_not_leak_identity) {
//       ctxpool::thread_pool pool{2};
//       ...                 // a stale read, residue or leak found while this test
//     }                     // ran fails it, the full finding text as the message
//
// Including the header installs one `gtest_listener` in the program (the same
// listener however many files include it). It switches detection on if it is
// off (findings are still printed to stderr as they occur), notes where the
// findings stood when each test starts and, when the test ends (after its
// fixture's TearDown and destructor), reports each finding made since as one
// non-fatal failure of that test (`ADD_FAILURE_AT` the read's site, or the
// task's submit site). GoogleTest's listeners see every test start and end,
// which is why no guard line per test is needed (the doctest integration,
// <ctxpool/diagnostics/doctest.hpp>, has no such hook and needs one).
//
// A finding that fails a test is withdrawn from the process's findings, so it
// does not also change the exit status (the failed test does); findings made
// outside any test (in a global environment's SetUp, at exit) still make the
// process exit with status 66. Findings reach the report file
// (`CTXPOOL_DIAGNOSTICS=residue:report=...`) either way.
//
// Findings from every thread count, so join or wait for the pools a test
// started before it ends; a pool that outlives tests (a global, a test
// suite's) has its findings reported in whichever test is running.
//
// To install the listener yourself (after `InitGoogleTest`, say), define
// `CTXPOOL_GTEST_NO_AUTO_LISTENER` before including this header and call
// `ctxpool::diagnostics::install_gtest_listener()`.
//
// @par Thread safety
// GoogleTest calls the listener from the thread that runs the tests;
// `install_gtest_listener` is for start-up (static initialisation or `main`).
//
// @par Lifetime
// GoogleTest owns the installed listener and deletes it at exit.
#pragma once

#include <cstdint>
#include <source_location>

#include <gtest/gtest.h>

#include <ctxpool/diagnostics.hpp>

namespace ctxpool::diagnostics {

/// A GoogleTest event listener that fails a test for each finding made while
/// it ran. See the file comment.
class gtest_listener : public ::testing::EmptyTestEventListener {
 public:
  /// Switches detection on before any test or global environment runs.
  void OnTestProgramStart(const ::testing::UnitTest& /*unit_test*/) override {
    if (!enabled()) enable();
  }

  /// Marks where the findings stand when `test` starts.
  void OnTestStart(const ::testing::TestInfo& /*test*/) override {
    mark_ = finding_mark();
    unobserved_ = unobserved_tasks();
  }

  /// Fails `test` once for each finding made since it started, and withdraws
  /// those findings.
  void OnTestEnd(const ::testing::TestInfo& test) override {
    for (const finding& f : take_findings_since(mark_)) {
      if (const code_location& site = site_of(f); site.line() != 0) {
        ADD_FAILURE_AT(site.file_name(), static_cast<int>(site.line())) << format_finding(f);
      } else {
        ADD_FAILURE_AT(test.file(), test.line()) << format_finding(f);
      }
    }
    // A pool built before detection was on runs its tasks unseen: say so
    // rather than pass a test that was never checked.
    if (const std::uint64_t missed = unobserved_tasks() - unobserved_; missed != 0) {
      ADD_FAILURE_AT(test.file(), test.line())
          << missed
          << " task(s) ran during this test unseen by residue detection: their pool was built "
             "before detection was switched on (a pool reads ctxpool::diagnostics::enabled() once, "
             "when it is built). Build the pool inside the test, or run the tests with "
             "CTXPOOL_DIAGNOSTICS=residue.";
    }
  }

 private:
  std::uint64_t mark_ = 0;
  std::uint64_t unobserved_ = 0;
};

/// Appends a `gtest_listener` to GoogleTest's listeners, once per process
/// however often it is called, and switches detection on if it is off.
/// Returns true.
inline bool install_gtest_listener() {
  static const bool installed = [] {
    if (!enabled()) enable();
    ::testing::UnitTest::GetInstance()->listeners().Append(new gtest_listener);
    return true;
  }();
  return installed;
}

#ifndef CTXPOOL_GTEST_NO_AUTO_LISTENER
namespace detail {
// An inline variable is initialised once for the whole program, however many
// files include this header; GetInstance() is safe during static initialisation.
[[maybe_unused]] inline const bool gtest_listener_installed = install_gtest_listener();
}  // namespace detail
#endif

}  // namespace ctxpool::diagnostics
