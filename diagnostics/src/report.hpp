// What the reporters get at the end of a run, and the report writers: the
// SUMMARY lines on stderr, and text, JSON-lines or SARIF report files.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <ctxpool/diagnostics/findings.hpp>
#include <ctxpool/diagnostics/options.hpp>

#include "suppressions.hpp"

namespace ctxpool::diagnostics::detail {

/// Everything a report needs at the end of the run.
struct run_summary {
  std::vector<finding> findings;  ///< still pending and taken by test guards, merged
  std::vector<suppression_count> suppressions;
  std::string
      plain_note;  ///< how plain thread_locals were watched, when worth saying; may be empty
};

/// Number of occurrences and unique findings of `kind`.
struct kind_total {
  std::uint64_t unique = 0;
  std::uint64_t occurrences = 0;
};
[[nodiscard]] kind_total total_of(const std::vector<finding>& all, finding_kind kind) noexcept;

/// The SUMMARY lines and suppression counts, as printed at exit.
[[nodiscard]] std::string format_summary(const run_summary& run);

/// Adds this process's report to the file at `path`, under an exclusive
/// lock: text and JSON lines are appended, SARIF results are merged into the
/// file's single run (a file that is not a ctxpool SARIF log is replaced).
/// `srcroot` is the `srcroot=` option (see options.hpp).
/// @returns false if the file could not be written.
bool write_report(const std::string& path, report_format format, std::string_view srcroot,
                  const run_summary& run);

}  // namespace ctxpool::diagnostics::detail
