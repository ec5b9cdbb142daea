// The suppressions of a run as one object: the rules (from the options and
// the suppressions file) with their hit counts, the caches declared with
// CTXPOOL_THREAD_CACHE, and the shipped default caches. Findings are matched
// against it, and plain thread_local discovery asks it which variables are
// caches, so both count their hits in one place.
//
// @par Thread safety
// Every member locks internally; the one object serves every thread. It may
// be called with the finding store's mutex held (never the other way round).
//
// @par Lifetime
// `the_suppressions()` is never destroyed: hooks may run during exit.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ctxpool/diagnostics/findings.hpp>
#include <ctxpool/diagnostics/options.hpp>

namespace ctxpool::diagnostics::detail {

/// A suppression line and how many occurrences (or, for a `thread-cache:`
/// line, variables) it matched.
struct suppression_count {
  suppression rule;
  std::uint64_t hits = 0;
};

class suppression_set {
 public:
  /// Replaces the rules (detection is being enabled); `use_defaults` is the
  /// `default_suppressions` option.
  void reset(std::vector<suppression> rules, bool use_defaults);

  /// The first rule that silences `f`, its hit counted; nullopt if none.
  [[nodiscard]] std::optional<std::size_t> match(const finding& f);

  /// Adds `n` occurrences to rule `index` (repeats counted without the lock).
  void add_hits(std::size_t index, std::uint64_t n);

  /// Sets every hit count back to zero (clear_findings).
  void clear_hits();

  /// Whether the plain thread_local `name` is a per-thread cache: state of
  /// code the program does not own (ctxpool, the C++ runtime, Boost, fmt,
  /// test frameworks), declared with CTXPOOL_THREAD_CACHE, a shipped default,
  /// or a `thread-cache:` line (whose hit is counted).
  [[nodiscard]] bool is_thread_cache(std::string_view name);

  /// Adds a name declared with CTXPOOL_THREAD_CACHE (static initialisation).
  void declare_cache(std::string_view name);

  /// The rules with their counts, for the summary and the report.
  [[nodiscard]] std::vector<suppression_count> counts() const;

 private:
  mutable std::mutex mutex_;
  std::vector<suppression_count> rules_;
  std::vector<std::string> declared_;
  bool use_defaults_ = true;
};

/// The one set of the process.
[[nodiscard]] suppression_set& the_suppressions();

}  // namespace ctxpool::diagnostics::detail
