// The detection model's interface: what the observer tells it (a task left a
// variable dirty, a task read one first) and what the session asks of it.
// The model pairs leaves with reads into findings and records them in the
// finding store; it never ends the process itself: its entry points return
// whether the caller must halt (halt_on_error).
//
// @par Thread safety
// `model_left_dirty` and `model_read_first` from any thread (a repeat costs
// one atomic increment; the store's mutex is taken the first time). The
// `_locked` functions with the store's mutex held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <source_location>
#include <string_view>
#include <vector>

#include <ctxpool/diagnostics/findings.hpp>

#include "finding_store.hpp"
#include "task_identity.hpp"

namespace ctxpool::diagnostics::detail {

/// A variable as the model sees it. `key` is process-unique: a
/// `thread_local_var`/`local_stack` id, or a plain thread_local's index
/// with `plain_key_bit` set.
struct variable_desc {
  std::uint64_t key = 0;
  std::string_view name;
  std::string_view type;
  std::string_view module;
  std::size_t size = 0;
};
inline constexpr std::uint64_t plain_key_bit = std::uint64_t{1} << 32;

/// Where an access happened: a `thread_local_var`'s source location, or the
/// symbolised instruction of a plain thread_local's access.
struct access_desc {
  std::source_location site{};           ///< a thread_local_var access
  const code_location* plain = nullptr;  ///< a plain thread_local access, or null
};

/// The reading side of one first access.
struct read_desc {
  access_desc at;
  std::uint64_t thread = 0;
  std::int64_t worker = -1;
};

/// `task` (running in a context of `lineage`) ends leaving `var` dirty, last
/// written `at`. `alone`: a finding by itself (a plain thread_local whose
/// reads cannot be watched). @returns whether the caller must halt.
[[nodiscard]] bool model_left_dirty(const variable_desc& var, const access_desc& at,
                                    const task_view& task, std::uint64_t lineage,
                                    bool alone) noexcept;

/// `task`'s first access to `var` is a read. @returns whether the caller must halt.
[[nodiscard]] bool model_read_first(const variable_desc& var, const read_desc& read,
                                    const task_view& task, std::uint64_t lineage) noexcept;

/// With the store's mutex held: forgets every record (clear_findings, enable).
void model_forget_locked() noexcept;

/// With the store's mutex held: brings the counts of the model's pending
/// findings and of the suppressions up to date (repeats are counted without
/// the lock).
void model_refresh_locked(finding_store& store) noexcept;

/// With the store's mutex held: the model's findings `taken` are being taken;
/// later occurrences count from zero again.
void model_taken_locked(const std::vector<finding>& taken) noexcept;

}  // namespace ctxpool::diagnostics::detail
