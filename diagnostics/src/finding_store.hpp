// The finding store: the pending findings (they decide the exit status), the
// ones a test guard took (reported, not counted for the exit), their
// deduplication on a hashed key, and the occurrence clock behind
// `finding::last_seen`. Recording never ends the process: it says whether
// the caller must halt (halt_on_error), and the caller does.
//
// @par Thread safety
// `mutex` guards every member but the atomics; it also guards the detection
// model (model.hpp), whose records pair up under it.
//
// @par Lifetime
// `the_store()` is never destroyed: hooks may run during exit.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <ctxpool/diagnostics/findings.hpp>

namespace ctxpool::diagnostics::detail {

/// What makes two findings the same one: kind, variable, type and every site.
struct finding_key {
  finding_kind kind = finding_kind::stale_read;
  std::string variable;
  std::string type;
  code_location site;
  code_location write_site;
  code_location submit_site;
  code_location writer_submit_site;
  bool operator==(const finding_key&) const = default;
};

[[nodiscard]] finding_key key_of(const finding& f);

struct finding_key_hash {
  std::size_t operator()(const finding_key& key) const noexcept;
};

/// Where one recorded occurrence went, and what the caller must do.
struct placement {
  std::uint64_t generation = 0;  ///< 0: nowhere (not recorded)
  std::size_t index = 0;         ///< in the pending list, or the suppression rule's
  bool suppressed = false;
  bool halt = false;  ///< a new finding with halt_on_error: the caller halts
};

struct finding_store {
  std::mutex mutex;
  std::vector<finding> pending;                                          // in the order first seen
  std::vector<finding> handled;                                          // taken by a test guard
  std::unordered_map<finding_key, std::size_t, finding_key_hash> index;  // into pending
  // Changes whenever `pending` is reordered or emptied or the suppressions
  // change, invalidating positions and records that threads cache.
  std::atomic<std::uint64_t> generation{1};
  bool print = true;           // print new findings to stderr (the `print` option)
  bool halt_on_error = false;  // ask callers to halt at the first new finding
};

/// The one store.
[[nodiscard]] finding_store& the_store();

/// The detector-wide occurrence clock behind `finding::last_seen`.
[[nodiscard]] std::uint64_t next_occurrence() noexcept;
[[nodiscard]] std::uint64_t last_occurrence() noexcept;

/// With `store.mutex` held: records one occurrence of `f` -- suppressed
/// (the rule's hit counted), counted against an identical pending finding,
/// or new (then printed).
placement record_locked(finding_store& store, finding f);

/// With `store.mutex` held: hands the findings `taken` (removed from
/// `pending` by the caller) to the test framework: they stay in the report
/// but no longer decide the exit status.
void hand_over_locked(finding_store& store, const std::vector<finding>& taken);

/// With `store.mutex` held: pending and taken findings as one list for the
/// summary and the report; one taken and then seen again is merged, counts added.
[[nodiscard]] std::vector<finding> reported_findings_locked(const finding_store& store);

}  // namespace ctxpool::diagnostics::detail
