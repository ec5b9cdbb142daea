// doctest integration: fail the running test case when it produced a finding.
//
//     #include <ctxpool/diagnostics/doctest.hpp>
//
//     TEST_CASE("handlers do not leak identity") {
//       CTXPOOL_CHECK_NO_FINDINGS();          // first line: before any pool is built
//       ctxpool::thread_pool pool{2};
//       ...                                   // any stale read, residue or leak found
//     }                                       // before the case ends fails it here
//
// `CTXPOOL_CHECK_NO_FINDINGS()` declares a guard that switches detection on
// if it is off (with findings printed to stderr as usual) and, when the guard
// is destroyed, reports each finding that occurred while it lived as one
// doctest failure (`FAIL_CHECK`) at the finding's site (the read site of a
// stale read), the full finding text as the message. The findings are then
// taken: they no longer change the process's exit status (doctest's own does),
// but they still reach the SUMMARY lines and the `report=` file, so a CI job
// that fails through the guard uploads a report naming the bug.
//
// A pool reads `enabled()` once, when it is built. A pool built while
// detection was off (a global or fixture pool, with CTXPOOL_DIAGNOSTICS unset)
// runs its tasks unobserved even after the guard switched detection on; the
// guard then fails the test case saying so, rather than passing silently.
// Build pools after the guard, or set CTXPOOL_DIAGNOSTICS=residue for the run.
//
// Findings from every thread count, so run one test case at a time (doctest
// does) and join the pools the case started before it ends.
//
// @par Thread safety
// A guard belongs to the test case's thread.
//
// @par Lifetime
// A local variable of a test case (or subcase); guards may nest, the inner
// one reports what occurred while it lived.
#pragma once

#include <cstdint>
#include <source_location>
#include <string>

#include <doctest/doctest.h>

#include <ctxpool/diagnostics.hpp>

namespace ctxpool::diagnostics {

/// Fails the running doctest test case for each finding made while it lives.
class doctest_guard {
 public:
  /// Starts watching; `where` is where a finding without a site of its own
  /// (a leak made outside any task) is reported.
  explicit doctest_guard(std::source_location where = std::source_location::current())
      : where_(where) {
    if (!enabled()) enable();
    mark_ = finding_mark();
    unobserved_ = unobserved_tasks();
  }
  doctest_guard(const doctest_guard&) = delete;
  doctest_guard& operator=(const doctest_guard&) = delete;
  ~doctest_guard() {
    for (const finding& f : take_findings_since(mark_)) {
      const code_location& site = site_of(f);
      const bool here = site.line() == 0;
      DOCTEST_ADD_FAIL_CHECK_AT(here ? where_.file_name() : site.file_name(),
                                static_cast<int>(here ? where_.line() : site.line()),
                                format_finding(f));
    }
    if (const std::uint64_t missed = unobserved_tasks() - unobserved_; missed != 0) {
      const std::string why =
          std::to_string(missed) +
          " task(s) ran while CTXPOOL_CHECK_NO_FINDINGS() watched, unseen by residue "
          "detection: their pool was built before detection was switched on (a pool reads "
          "ctxpool::diagnostics::enabled() once, when it is built). Build the pool after "
          "the guard, or run the tests with CTXPOOL_DIAGNOSTICS=residue.";
      DOCTEST_ADD_FAIL_CHECK_AT(where_.file_name(), static_cast<int>(where_.line()), why);
    }
  }

 private:
  std::source_location where_;
  std::uint64_t mark_ = 0;
  std::uint64_t unobserved_ = 0;
};

}  // namespace ctxpool::diagnostics

/// Fails the enclosing doctest test case for every finding made until the
/// end of the enclosing scope. See the file comment.
#define CTXPOOL_CHECK_NO_FINDINGS() \
  const ::ctxpool::diagnostics::doctest_guard DOCTEST_ANONYMOUS(ctxpool_findings_guard_) {}
