// The detection model's fast path: per-thread caches of the last records
// used, so that a repeat costs one atomic increment, and the lossy table of
// coroutine steps (which lineage last left which variable dirty).
#include <array>

#include "model_records.hpp"

namespace ctxpool::diagnostics::detail {
namespace model {
namespace {

// ---- coroutine steps: which lineage left which variable dirty -----------------
//
// A lossy table: an entry per hash of (variable, lineage). Two pairs hashing
// to one entry evict each other, so a read may miss its own step's leave and
// be classified as an ordinary stale read instead (still a finding).

struct lineage_mark {
  std::atomic<std::uint64_t> tag{0};
  std::atomic<leave_rec*> leave{nullptr};
};
constexpr std::size_t mark_count = 1U << 12;
std::array<lineage_mark, mark_count> marks;

std::uint64_t mark_tag(std::uint64_t key, std::uint64_t lineage) noexcept {
  std::uint64_t h = (key + 1) * 0x9E3779B97F4A7C15ULL ^ lineage * 0xC2B2AE3D27D4EB4FULL;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ULL;
  h ^= h >> 32;
  return h | 1U;
}

// ---- per-thread caches of the last records used ------------------------------

/// What a cached record stands for: a variable, the site of the write or
/// read, the task's submit site, under one generation of the store. Sites
/// compare by their file-name pointers (a plain thread_local's by the
/// instruction): a miss only costs the slow path.
struct cache_key {
  std::uint64_t generation;
  std::uint64_t key;
  const char* site_file;
  std::uint_least32_t site_line;
  std::uintptr_t site_pc;
  const char* submit_file;
  std::uint_least32_t submit_line;
  bool operator==(const cache_key&) const = default;
};

cache_key key_of(std::uint64_t generation, std::uint64_t key, const access_desc& at,
                 const task_view& task) noexcept {
  return {generation,
          key,
          at.site.file_name(),
          at.site.line(),
          at.plain != nullptr ? at.plain->pc() : 0,
          task.submit_site.file_name(),
          task.submit_site.line()};
}

struct leave_cache_entry {
  cache_key key;
  leave_rec* rec;
};

struct read_cache_entry {
  cache_key key;
  const leave_rec* own_step;
  read_rec* rec;
};

constexpr std::size_t cache_ways = 8;
constinit thread_local leave_cache_entry leave_cache[cache_ways]{};
constinit thread_local read_cache_entry read_cache[cache_ways]{};

}  // namespace

void set_mark(std::uint64_t key, std::uint64_t lineage, leave_rec* rec) noexcept {
  const std::uint64_t tag = mark_tag(key, lineage);
  lineage_mark& m = marks[tag % mark_count];
  // A coroutine's steps mark the same entry again and again: skip the stores
  // (and the cache-line traffic) when nothing changes.
  if (m.tag.load(std::memory_order_relaxed) == tag &&
      m.leave.load(std::memory_order_relaxed) == rec) {
    return;
  }
  m.leave.store(rec, std::memory_order_relaxed);
  m.tag.store(tag, std::memory_order_release);
}

const leave_rec* find_mark(std::uint64_t key, std::uint64_t lineage) noexcept {
  const std::uint64_t tag = mark_tag(key, lineage);
  const lineage_mark& m = marks[tag % mark_count];
  if (m.tag.load(std::memory_order_acquire) != tag) return nullptr;
  const leave_rec* rec = m.leave.load(std::memory_order_relaxed);
  return rec != nullptr && rec->key == key ? rec : nullptr;
}

void clear_marks() noexcept {
  for (lineage_mark& mark : marks) {
    mark.tag.store(0, std::memory_order_relaxed);
    mark.leave.store(nullptr, std::memory_order_relaxed);
  }
}

}  // namespace model

bool model_left_dirty(const variable_desc& var, const access_desc& at, const task_view& task,
                      std::uint64_t lineage, bool alone) noexcept {
  using namespace model;
  const cache_key key =
      key_of(the_store().generation.load(std::memory_order_acquire), var.key, at, task);
  leave_cache_entry& e = leave_cache[var.key % cache_ways];
  leave_rec* rec = nullptr;
  bool halt = false;
  if (e.rec != nullptr && e.key == key) {
    rec = e.rec;
    rec->count.fetch_add(1, std::memory_order_relaxed);
    // Only a leave that is a finding by itself needs its time (for guards).
    if (rec->alone) rec->last_seen.store(next_occurrence(), std::memory_order_relaxed);
  } else {
    rec = leave_slow(var, at, task, alone, halt);
    if (rec == nullptr) return halt;
    e = {key, rec};
  }
  if (lineage != 0) set_mark(var.key, lineage, rec);
  return halt;
}

bool model_read_first(const variable_desc& var, const read_desc& read, const task_view& task,
                      std::uint64_t lineage) noexcept {
  using namespace model;
  const leave_rec* own_step = lineage != 0 ? find_mark(var.key, lineage) : nullptr;
  bool halt = false;
  if (read.at.plain != nullptr) {
    // Plain reads come at most once per watched variable per task: no cache.
    (void)read_slow(var, read, task, own_step, halt);
    return halt;
  }
  const cache_key key =
      key_of(the_store().generation.load(std::memory_order_acquire), var.key, read.at, task);
  read_cache_entry& e = read_cache[var.key % cache_ways];
  if (e.rec != nullptr && e.own_step == own_step && e.key == key) {
    e.rec->count.fetch_add(1, std::memory_order_relaxed);
    e.rec->last_seen.store(next_occurrence(), std::memory_order_relaxed);
    return false;
  }
  read_rec* rec = read_slow(var, read, task, own_step, halt);
  if (rec != nullptr) e = {key, own_step, rec};
  return halt;
}

}  // namespace ctxpool::diagnostics::detail
