// The detection model's records, shared by its slow path (model.cpp, under
// the store's mutex) and its fast path (model_fast_path.cpp, per-thread
// caches and the coroutine-step marks).
//
// Repeats are the common case (the same handler leaves the same variable
// dirty in every request), so each thread keeps the records it used last and
// counts a repeat with one atomic increment; the store's mutex is taken only
// the first time a thread sees a (variable, site, submit site) combination,
// or after findings were taken or cleared. Records are never freed:
// per-thread caches may still point at records of a forgotten model, and
// they stay valid.
#pragma once

#include <atomic>
#include <cstdint>
#include <source_location>
#include <vector>

#include "model.hpp"

namespace ctxpool::diagnostics::detail::model {

struct pair_rec;

/// Tasks leaving one variable dirty from one (write site, submit site).
struct leave_rec {
  std::uint64_t key = 0;
  code_location write_site;
  std::source_location submit_site{};
  task_ref task;  // the first task that did
  bool alone = false;
  std::atomic<std::uint64_t> count{0};
  std::atomic<std::uint64_t> last_seen{0};
  std::vector<pair_rec*> pairs;  // guarded by the store's mutex
};

/// Tasks whose first access to one variable was a read at one site, from
/// tasks submitted at one site.
struct read_rec {
  std::uint64_t key = 0;
  code_location site;
  bool is_plain = false;
  std::source_location submit_site{};
  task_ref task;  // the first task that did
  std::uint64_t thread = 0;
  std::int64_t worker = -1;
  // read-across-suspension: the leave of the same coroutine's earlier step
  // that this read continues; null for a stale-read candidate.
  const leave_rec* own_step = nullptr;
  std::atomic<std::uint64_t> count{0};
  std::atomic<std::uint64_t> last_seen{0};
  std::vector<pair_rec*> pairs;  // guarded by the store's mutex
};

/// Slow path, with the store's mutex taken inside: finds or makes the
/// record, counts the occurrence, offers new findings to the store. Null
/// when out of memory. `halt` is set when the caller must halt.
leave_rec* leave_slow(const variable_desc& var, const access_desc& at, const task_view& task,
                      bool alone, bool& halt) noexcept;
read_rec* read_slow(const variable_desc& var, const read_desc& read, const task_view& task,
                    const leave_rec* own_step, bool& halt) noexcept;

/// Coroutine steps: which lineage last left which variable dirty (lossy).
void set_mark(std::uint64_t key, std::uint64_t lineage, leave_rec* rec) noexcept;
[[nodiscard]] const leave_rec* find_mark(std::uint64_t key, std::uint64_t lineage) noexcept;
void clear_marks() noexcept;

}  // namespace ctxpool::diagnostics::detail::model
