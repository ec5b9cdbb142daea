// The detection model: per variable and process-wide, which tasks leave it
// dirty and which read it before writing it; a finding per (variable, leaving
// site, reading site), whatever threads the tasks ran on and in either order.
//
// Repeats are the common case (the same handler leaves the same slot dirty in
// every request), so each thread keeps the records it used last and counts a
// repeat with one atomic increment; the state mutex is taken only the first
// time a thread sees a (variable, site, submit site) combination, or after
// findings were taken or cleared. Records are never freed: per-thread caches
// may still point at records of a forgotten model, and they stay valid.
#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <memory>

#include "detector.hpp"

namespace ctxpool::diagnostics::detail {

namespace {

struct pair_rec;

/// Tasks leaving one variable dirty from one (write site, submit site).
struct leave_rec {
  std::uint64_t key = 0;
  std::source_location write_site{};
  std::source_location submit_site{};
  task_ref task;  // the first task that did
  bool alone = false;
  std::atomic<std::uint64_t> count{0};
  std::atomic<std::uint64_t> last_seen{0};
  std::vector<pair_rec*> pairs;  // guarded by the state mutex
};

/// Tasks whose first access to one variable was a read at one site, from
/// tasks submitted at one site.
struct read_rec {
  std::uint64_t key = 0;
  std::source_location site{};
  code_location plain;
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
  std::vector<pair_rec*> pairs;  // guarded by the state mutex
};

struct variable_rec {
  std::string name;
  std::string type;
  std::string module;
  std::size_t size = 0;
  std::vector<leave_rec*> leaves;
  std::vector<read_rec*> reads;  // stale-read candidates only
};

/// One finding of the model: a leave paired with a read (or a leave alone).
struct pair_rec {
  leave_rec* leave = nullptr;
  read_rec* read = nullptr;    // null: a residue finding by itself
  finding_kind kind = finding_kind::stale_read;
  std::uint64_t offset = 0;    // occurrences before the current pending finding
  long suppression = -1;       // the suppression line that silenced it
  std::uint64_t counted = 0;   // occurrences already added to that line's hits
};

std::uint64_t total(const pair_rec& p) noexcept {
  return p.read != nullptr ? p.read->count.load(std::memory_order_relaxed)
                           : p.leave->count.load(std::memory_order_relaxed);
}

bool same_site(const std::source_location& a, const std::source_location& b) noexcept {
  return a.line() == b.line() && a.column() == b.column() &&
         (a.file_name() == b.file_name() || std::strcmp(a.file_name(), b.file_name()) == 0);
}

bool same_code(const code_location& a, const code_location& b) noexcept {
  if (a.line() != 0 || b.line() != 0) {
    return a.line() == b.line() && std::strcmp(a.file_name(), b.file_name()) == 0 &&
           std::strcmp(a.function_name(), b.function_name()) == 0;
  }
  return a.pc() == b.pc();
}

task_ref ref_of(const task_view& task) {
  return {task.id, std::string(task.name), task.submit_site};
}

// ---- coroutine steps: which lineage left which variable dirty -----------------
//
// A lossy table: a slot per hash of (variable, lineage). Two pairs hashing to
// one slot evict each other, so a read may miss its own step's leave and be
// classified as an ordinary stale read instead (still a finding).

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

// ---- per-thread caches of the last records used ------------------------------

/// What a cached record stands for: a variable, the site of the write or
/// read, the task's submit site, under one generation of the state. Sites
/// compare by their file-name pointers: a miss only costs the slow path.
struct cache_key {
  std::uint64_t generation;
  std::uint64_t key;
  const char* site_file;
  std::uint_least32_t site_line;
  const char* submit_file;
  std::uint_least32_t submit_line;
  bool operator==(const cache_key&) const = default;
};

cache_key key_of(std::uint64_t generation, std::uint64_t key, const std::source_location& site,
                 const task_view& task) noexcept {
  return {generation,       key, site.file_name(), site.line(), task.submit_site.file_name(),
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

struct model_state {
  std::unordered_map<std::uint64_t, variable_rec> variables;
  std::deque<leave_rec> leaves;  // deques: records never move
  std::deque<read_rec> reads;
  std::unordered_map<std::string, pair_rec> pairs;  // by the finding's dedup key
  // Forgotten records stay alive: threads may still hold them in caches.
  std::vector<std::deque<leave_rec>> old_leaves;
  std::vector<std::deque<read_rec>> old_reads;
};

namespace {

model_state& model_of(state& s) {
  if (s.model == nullptr) s.model = new model_state;  // never destroyed, like the state
  return *s.model;
}

variable_rec& variable_of(model_state& m, const slot_desc& slot) {
  auto [it, inserted] = m.variables.try_emplace(slot.key);
  if (inserted) {
    it->second.name = std::string(slot.name);
    it->second.type = std::string(slot.type);
    it->second.module = std::string(slot.module);
    it->second.size = slot.size;
  }
  return it->second;
}

finding make_finding(const variable_rec& v, const pair_rec& p) {
  finding f;
  f.kind = p.kind;
  f.variable = v.name;
  f.type = v.type;
  f.module = v.module;
  f.size = v.size;
  f.left_dirty = p.leave->count.load(std::memory_order_relaxed);
  if (p.read != nullptr) {
    f.task = p.read->task;
    f.site = p.read->is_plain ? p.read->plain : code_location(p.read->site);
    f.thread = p.read->thread;
    f.worker = p.read->worker;
    f.writer = p.leave->task;
    f.write_site = p.leave->write_site;
    f.same_context = p.kind == finding_kind::read_across_suspension;
    f.last_seen = p.read->last_seen.load(std::memory_order_relaxed);
  } else {
    f.task = p.leave->task;
    f.write_site = p.leave->write_site;
    f.last_seen = p.leave->last_seen.load(std::memory_order_relaxed);
  }
  return f;
}

/// Makes `p` a pending finding if it has occurrences that are not pending
/// yet (new, or repeated after a test guard took it).
void offer(std::unique_lock<std::mutex>& lock, state& s, const variable_rec& v, pair_rec& p) {
  const std::uint64_t now = total(p);
  if (now <= p.offset) return;
  finding f = make_finding(v, p);
  const std::string key = dedup_key(f);
  if (s.index.contains(key)) return;
  if (p.suppression >= 0) {
    // Already silenced: only its count grows (model_refresh_locked).
    return;
  }
  f.count = now - p.offset;
  const placement where = record_locked(lock, std::move(f));
  if (where.suppressed) {
    p.suppression = static_cast<long>(where.index);
    s.suppressions[where.index].hits += now - p.offset - 1;  // record_locked counted one
    p.counted = now;
  }
}

pair_rec& pair_up(model_state& m, leave_rec* leave, read_rec* read, finding_kind kind,
                  const variable_rec& v) {
  pair_rec draft{leave, read, kind};
  const std::string key = dedup_key(make_finding(v, draft));
  auto [it, inserted] = m.pairs.try_emplace(key, draft);
  if (inserted) {
    leave->pairs.push_back(&it->second);
    if (read != nullptr) read->pairs.push_back(&it->second);
  }
  return it->second;
}

leave_rec* leave_slow(const slot_desc& slot, std::source_location write_site,
                      const task_view& task, bool alone) noexcept {
  try {
    state& s = the_state();
    std::unique_lock lock(s.mutex);
    model_state& m = model_of(s);
    variable_rec& v = variable_of(m, slot);
    leave_rec* rec = nullptr;
    for (leave_rec* l : v.leaves) {
      if (same_site(l->write_site, write_site) && same_site(l->submit_site, task.submit_site)) {
        rec = l;
        break;
      }
    }
    const bool fresh = rec == nullptr;
    if (fresh) {
      rec = &m.leaves.emplace_back();
      rec->key = slot.key;
      rec->write_site = write_site;
      rec->submit_site = task.submit_site;
      rec->task = ref_of(task);
      rec->alone = alone;
      v.leaves.push_back(rec);
    }
    rec->count.fetch_add(1, std::memory_order_relaxed);
    rec->last_seen.store(next_occurrence(), std::memory_order_relaxed);
    if (fresh) {
      if (alone) pair_up(m, rec, nullptr, finding_kind::residue, v);
      for (read_rec* r : v.reads) pair_up(m, rec, r, finding_kind::stale_read, v);
    }
    // Offer the pairs of this leave that are not pending (new ones, or ones a
    // guard took earlier); offer may end the process (halt_on_error).
    for (std::size_t i = 0; i < rec->pairs.size(); ++i) offer(lock, s, v, *rec->pairs[i]);
    return rec;
  } catch (...) {
    return nullptr;  // out of memory while recording: drop it
  }
}

read_rec* read_slow(const slot_desc& slot, const read_desc& read, const task_view& task,
                    const leave_rec* own_step) noexcept {
  try {
    state& s = the_state();
    std::unique_lock lock(s.mutex);
    model_state& m = model_of(s);
    variable_rec& v = variable_of(m, slot);
    read_rec* rec = nullptr;
    auto matches = [&](const read_rec& r) {
      if (r.own_step != own_step || r.is_plain != (read.plain != nullptr)) return false;
      if (!same_site(r.submit_site, task.submit_site)) return false;
      return read.plain != nullptr ? same_code(r.plain, *read.plain) : same_site(r.site, read.site);
    };
    if (own_step == nullptr) {
      for (read_rec* r : v.reads) {
        if (matches(*r)) {
          rec = r;
          break;
        }
      }
    } else {
      for (pair_rec* p : own_step->pairs) {
        if (p->read != nullptr && matches(*p->read)) {
          rec = p->read;
          break;
        }
      }
    }
    const bool fresh = rec == nullptr;
    if (fresh) {
      rec = &m.reads.emplace_back();
      rec->key = slot.key;
      rec->site = read.site;
      if (read.plain != nullptr) {
        rec->plain = *read.plain;
        rec->is_plain = true;
      }
      rec->submit_site = task.submit_site;
      rec->task = ref_of(task);
      rec->thread = read.thread;
      rec->worker = read.worker;
      rec->own_step = own_step;
    }
    rec->count.fetch_add(1, std::memory_order_relaxed);
    rec->last_seen.store(next_occurrence(), std::memory_order_relaxed);
    if (fresh) {
      if (own_step != nullptr) {
        pair_up(m, const_cast<leave_rec*>(own_step), rec, finding_kind::read_across_suspension, v);
      } else {
        v.reads.push_back(rec);
        for (leave_rec* l : v.leaves) pair_up(m, l, rec, finding_kind::stale_read, v);
      }
    }
    for (std::size_t i = 0; i < rec->pairs.size(); ++i) offer(lock, s, v, *rec->pairs[i]);
    return rec;
  } catch (...) {
    return nullptr;
  }
}

}  // namespace

void model_left_dirty(const slot_desc& slot, std::source_location write_site,
                      const task_view& task, std::uint64_t lineage, bool alone) noexcept {
  const cache_key key =
      key_of(the_state().generation.load(std::memory_order_acquire), slot.key, write_site, task);
  leave_cache_entry& e = leave_cache[slot.key % cache_ways];
  leave_rec* rec = nullptr;
  if (e.rec != nullptr && e.key == key) {
    rec = e.rec;
    rec->count.fetch_add(1, std::memory_order_relaxed);
    // Only a leave that is a finding by itself needs its time (for guards).
    if (rec->alone) rec->last_seen.store(next_occurrence(), std::memory_order_relaxed);
  } else {
    rec = leave_slow(slot, write_site, task, alone);
    if (rec == nullptr) return;
    e = {key, rec};
  }
  if (lineage != 0) set_mark(slot.key, lineage, rec);
}

void model_read_first(const slot_desc& slot, const read_desc& read, const task_view& task,
                      std::uint64_t lineage) noexcept {
  const leave_rec* own_step = lineage != 0 ? find_mark(slot.key, lineage) : nullptr;
  if (read.plain != nullptr) {
    // Plain reads come at most once per watched variable per task: no cache.
    (void)read_slow(slot, read, task, own_step);
    return;
  }
  const cache_key key =
      key_of(the_state().generation.load(std::memory_order_acquire), slot.key, read.site, task);
  read_cache_entry& e = read_cache[slot.key % cache_ways];
  if (e.rec != nullptr && e.own_step == own_step && e.key == key) {
    e.rec->count.fetch_add(1, std::memory_order_relaxed);
    e.rec->last_seen.store(next_occurrence(), std::memory_order_relaxed);
    return;
  }
  read_rec* rec = read_slow(slot, read, task, own_step);
  if (rec == nullptr) return;
  e = {key, own_step, rec};
}

void model_forget_locked(state& s) noexcept {
  model_state& m = model_of(s);
  try {
    m.old_leaves.push_back(std::move(m.leaves));
    m.old_reads.push_back(std::move(m.reads));
  } catch (...) {
    // Cannot keep them aside: keep them where they are (they only cost memory).
    return;
  }
  m.leaves.clear();
  m.reads.clear();
  m.variables.clear();
  m.pairs.clear();
  for (lineage_mark& mark : marks) {
    mark.tag.store(0, std::memory_order_relaxed);
    mark.leave.store(nullptr, std::memory_order_relaxed);
  }
}

void model_refresh_locked(state& s) noexcept {
  if (s.model == nullptr) return;
  model_state& m = *s.model;
  for (finding& f : s.list) {
    if (f.kind != finding_kind::stale_read && f.kind != finding_kind::read_across_suspension &&
        f.kind != finding_kind::residue) {
      continue;
    }
    try {
      const auto it = m.pairs.find(dedup_key(f));
      if (it == m.pairs.end()) continue;  // a watched-variable residue, not the model's
      const pair_rec& p = it->second;
      const std::uint64_t now = total(p);
      if (now > p.offset) f.count = now - p.offset;
      f.left_dirty = p.leave->count.load(std::memory_order_relaxed);
      const std::uint64_t seen = p.read != nullptr
                                     ? p.read->last_seen.load(std::memory_order_relaxed)
                                     : p.leave->last_seen.load(std::memory_order_relaxed);
      f.last_seen = std::max(f.last_seen, seen);
    } catch (...) {
    }
  }
  for (auto& [key, p] : m.pairs) {
    if (p.suppression < 0 || static_cast<std::size_t>(p.suppression) >= s.suppressions.size()) {
      continue;
    }
    const std::uint64_t now = total(p);
    if (now > p.counted) {
      s.suppressions[static_cast<std::size_t>(p.suppression)].hits += now - p.counted;
      p.counted = now;
    }
  }
}

void model_taken_locked(state& s, const std::vector<finding>& taken) noexcept {
  if (s.model == nullptr) return;
  model_state& m = *s.model;
  for (const finding& f : taken) {
    try {
      const auto it = m.pairs.find(dedup_key(f));
      if (it != m.pairs.end()) it->second.offset = total(it->second);
    } catch (...) {
    }
  }
}

}  // namespace ctxpool::diagnostics::detail
