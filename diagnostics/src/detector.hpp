// Private interface between the detector and the report writers.
#pragma once

#include <string>
#include <vector>

#include <ctxpool/diagnostics/findings.hpp>
#include <ctxpool/diagnostics/options.hpp>

namespace ctxpool::diagnostics::detail {

/// What a suppression line matched, for the end-of-run counts.
struct suppression_count {
  suppression rule;
  std::uint64_t hits = 0;
};

/// Everything a report needs at the end of the run.
struct run_summary {
  std::vector<finding> findings;
  std::vector<suppression_count> suppressions;
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
/// @returns false if the file could not be written.
bool write_report(const std::string& path, report_format format, const run_summary& run);

/// A JSON string literal for `s`, quotes included.
[[nodiscard]] std::string json_string(std::string_view s);

inline constexpr finding_kind all_kinds[] = {finding_kind::stale_read, finding_kind::residue,
                                             finding_kind::leaked_value,
                                             finding_kind::leaked_context};

}  // namespace ctxpool::diagnostics::detail
