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
// doctest failure (`FAIL_CHECK`) at the finding's site, the full finding text
// as the message. The findings are then withdrawn, so they do not also change
// the process's exit status. Build pools after the guard: a pool reads
// `enabled()` when it is constructed.
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
  }
  doctest_guard(const doctest_guard&) = delete;
  doctest_guard& operator=(const doctest_guard&) = delete;
  ~doctest_guard() {
    for (const finding& f : take_findings_since(mark_)) {
      std::source_location where = f.site.line() != 0 ? f.site : f.task.submit_site;
      if (where.line() == 0) where = where_;
      DOCTEST_ADD_FAIL_CHECK_AT(where.file_name(), static_cast<int>(where.line()),
                                format_finding(f));
    }
  }

 private:
  std::source_location where_;
  std::uint64_t mark_ = 0;
};

}  // namespace ctxpool::diagnostics

/// Fails the enclosing doctest test case for every finding made until the
/// end of the enclosing scope. See the file comment.
#define CTXPOOL_CHECK_NO_FINDINGS() \
  const ::ctxpool::diagnostics::doctest_guard DOCTEST_ANONYMOUS(ctxpool_findings_guard_) {}
