// The finding kinds as one table: every list of kinds and every per-kind
// choice (names, suppression groups, SARIF rules, levels, report texts) is
// read from it.
//
// Adding a kind: a `finding_kind` enumerator in findings.hpp, one row in
// finding_kinds.cpp (in enumerator order; a static_assert checks it), and
// the detection code that records it. Nothing else names kinds one by one:
// `to_string`, the SUMMARY lines, the JSON counts, the suppression parser
// and matcher, the SARIF rules and `format_finding` all walk the table
// (tests/diagnostics/finding_kinds_test.cpp checks each of them per row;
// tests/diagnostics/example_kind/ adds a kind that way and builds it).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include <ctxpool/diagnostics/findings.hpp>

namespace ctxpool::diagnostics::detail {

/// Everything that differs from one finding kind to another.
struct kind_info {
  finding_kind kind;
  std::string_view name;   ///< in reports, SUMMARY lines and suppressions ("stale-read")
  std::string_view group;  ///< a suppression kind that also covers it ("leak"), or empty
  /// Whether the suppression hint names the variable (else the file of its site).
  bool hint_by_variable;
  std::string_view sarif_name;        ///< SARIF rule name ("StaleThreadLocalRead")
  std::string_view sarif_short_text;  ///< SARIF shortDescription
  std::string_view sarif_full_text;   ///< SARIF fullDescription
  std::string_view level;             ///< SARIF level: "error" or "warning"
  /// The one-line message of JSON and SARIF results.
  std::string (*one_line)(const finding& f);
  /// The stderr block after its "==pid==ERROR: ctxpool: " prefix, without
  /// the suppression hint (format_finding adds both).
  std::string (*details)(const finding& f);
};

/// The table, in `finding_kind` order.
[[nodiscard]] std::span<const kind_info> kind_table() noexcept;

/// The row of `kind`.
[[nodiscard]] const kind_info& info_of(finding_kind kind) noexcept;

/// The suppression kind of the cache declarations for plain thread_locals
/// (not a finding kind: it declares variables, it silences no finding).
inline constexpr std::string_view thread_cache_kind = "thread-cache";

/// Whether `rule` (a suppression line's kind) is valid: a kind's name, a
/// group, "*" or `thread_cache_kind`.
[[nodiscard]] bool is_suppression_kind(std::string_view rule) noexcept;

/// "stale-read, ..., leak, * or thread-cache": the valid suppression kinds, for errors.
[[nodiscard]] std::string suppression_kinds_list();

/// Whether a suppression line of kind `rule` covers findings of `kind`.
[[nodiscard]] bool kind_matches(std::string_view rule, finding_kind kind) noexcept;

}  // namespace ctxpool::diagnostics::detail
