// The detection model: per variable and process-wide, which tasks leave it
// dirty and which read it before writing it; a finding per (variable, leaving
// site, reading site), whatever threads the tasks ran on and in either order.
// This file holds the records' slow path and the pairing, under the store's
// mutex; model_fast_path.cpp counts repeats without it.
#include <algorithm>
#include <deque>
#include <string>
#include <unordered_map>

#include "model_records.hpp"
#include "suppressions.hpp"

namespace ctxpool::diagnostics::detail {
namespace model {
namespace {

struct variable_rec {
  std::string name;
  std::string type;
  std::string module;
  std::size_t size = 0;
  std::vector<leave_rec*> leaves;
  std::vector<read_rec*> reads;  // stale-read candidates only
};

}  // namespace

/// One finding of the model: a leave paired with a read (or a leave alone).
struct pair_rec {
  leave_rec* leave = nullptr;
  read_rec* read = nullptr;  // null: a residue finding by itself
  finding_kind kind = finding_kind::stale_read;
  std::uint64_t offset = 0;   // occurrences before the current pending finding
  long suppression = -1;      // the suppression line that silenced it
  std::uint64_t counted = 0;  // occurrences already added to that line's hits
};

namespace {

std::uint64_t total(const pair_rec& p) noexcept {
  return p.read != nullptr ? p.read->count.load(std::memory_order_relaxed)
                           : p.leave->count.load(std::memory_order_relaxed);
}

/// Everything the model knows, guarded by the store's mutex.
struct model_state {
  std::unordered_map<std::uint64_t, variable_rec> variables;
  std::deque<leave_rec> leaves;  // deques: records never move
  std::deque<read_rec> reads;
  std::unordered_map<finding_key, pair_rec, finding_key_hash> pairs;
  // Forgotten records stay alive: threads may still hold them in caches.
  std::vector<std::deque<leave_rec>> old_leaves;
  std::vector<std::deque<read_rec>> old_reads;
};

model_state& the_model() {
  static model_state* instance = new model_state;  // never destroyed, like the store
  return *instance;
}

variable_rec& variable_of(model_state& m, const variable_desc& var) {
  auto [it, inserted] = m.variables.try_emplace(var.key);
  if (inserted) {
    it->second.name = std::string(var.name);
    it->second.type = std::string(var.type);
    it->second.module = std::string(var.module);
    it->second.size = var.size;
  }
  return it->second;
}

code_location location_of(const access_desc& at) {
  return at.plain != nullptr ? *at.plain : code_location(at.site);
}

finding make_finding(const variable_rec& v, const pair_rec& p) {
  finding f;
  f.kind = p.kind;
  f.variable = v.name;
  f.type = v.type;
  f.module = v.module;
  f.size = v.size;
  f.left_dirty = p.leave->count.load(std::memory_order_relaxed);
  f.write_site = p.leave->write_site;
  if (p.read != nullptr) {
    f.task = p.read->task;
    f.site = p.read->site;
    f.thread = p.read->thread;
    f.worker = p.read->worker;
    f.writer = p.leave->task;
    f.same_context = p.kind == finding_kind::read_across_suspension;
    f.last_seen = p.read->last_seen.load(std::memory_order_relaxed);
  } else {
    f.task = p.leave->task;
    f.last_seen = p.leave->last_seen.load(std::memory_order_relaxed);
  }
  return f;
}

/// Makes `p` a pending finding if it has occurrences that are not pending
/// yet (new, or repeated after a test guard took it). @returns whether the
/// caller must halt.
bool offer(finding_store& store, const variable_rec& v, pair_rec& p) {
  const std::uint64_t now = total(p);
  if (now <= p.offset) return false;
  finding f = make_finding(v, p);
  if (store.index.contains(key_of(f))) return false;
  if (p.suppression >= 0) return false;  // already silenced: only its count grows (refresh)
  f.count = now - p.offset;
  const placement where = record_locked(store, std::move(f));
  if (where.suppressed) {
    p.suppression = static_cast<long>(where.index);
    the_suppressions().add_hits(where.index, now - p.offset - 1);  // record_locked counted one
    p.counted = now;
  }
  return where.halt;
}

pair_rec& pair_up(model_state& m, leave_rec* leave, read_rec* read, finding_kind kind,
                  const variable_rec& v) {
  pair_rec draft;
  draft.leave = leave;
  draft.read = read;
  draft.kind = kind;
  auto [it, inserted] = m.pairs.try_emplace(key_of(make_finding(v, draft)), draft);
  if (inserted) {
    leave->pairs.push_back(&it->second);
    if (read != nullptr) read->pairs.push_back(&it->second);
  }
  return it->second;
}

/// Offers every pair of a record; stops at the first that asks to halt.
template <class Record>
bool offer_pairs(finding_store& store, const variable_rec& v, Record& rec) {
  for (std::size_t i = 0; i < rec.pairs.size(); ++i) {
    if (offer(store, v, *rec.pairs[i])) return true;
  }
  return false;
}

}  // namespace

leave_rec* leave_slow(const variable_desc& var, const access_desc& at, const task_view& task,
                      bool alone, bool& halt) noexcept {
  try {
    finding_store& store = the_store();
    std::lock_guard lock(store.mutex);
    model_state& m = the_model();
    variable_rec& v = variable_of(m, var);
    const code_location write_site = location_of(at);
    leave_rec* rec = nullptr;
    for (leave_rec* l : v.leaves) {
      if (l->write_site == write_site &&
          code_location(l->submit_site) == code_location(task.submit_site)) {
        rec = l;
        break;
      }
    }
    const bool fresh = rec == nullptr;
    if (fresh) {
      rec = &m.leaves.emplace_back();
      rec->key = var.key;
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
    // guard took earlier).
    halt = offer_pairs(store, v, *rec);
    return rec;
  } catch (...) {
    return nullptr;  // out of memory while recording: drop it
  }
}

read_rec* read_slow(const variable_desc& var, const read_desc& read, const task_view& task,
                    const leave_rec* own_step, bool& halt) noexcept {
  try {
    finding_store& store = the_store();
    std::lock_guard lock(store.mutex);
    model_state& m = the_model();
    variable_rec& v = variable_of(m, var);
    const code_location site = location_of(read.at);
    const code_location submit_site(task.submit_site);
    auto matches = [&](const read_rec& r) {
      return r.own_step == own_step && r.is_plain == (read.at.plain != nullptr) &&
             code_location(r.submit_site) == submit_site && r.site == site;
    };
    read_rec* rec = nullptr;
    if (own_step == nullptr) {
      const auto it = std::find_if(v.reads.begin(), v.reads.end(),
                                   [&](const read_rec* r) { return matches(*r); });
      if (it != v.reads.end()) rec = *it;
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
      rec->key = var.key;
      rec->site = site;
      rec->is_plain = read.at.plain != nullptr;
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
    halt = offer_pairs(store, v, *rec);
    return rec;
  } catch (...) {
    return nullptr;
  }
}

}  // namespace model

void model_forget_locked() noexcept {
  model::model_state& m = model::the_model();
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
  model::clear_marks();
}

void model_refresh_locked(finding_store& store) noexcept {
  model::model_state& m = model::the_model();
  for (finding& f : store.pending) {
    if (f.kind != finding_kind::stale_read && f.kind != finding_kind::read_across_suspension &&
        f.kind != finding_kind::residue) {
      continue;
    }
    try {
      const auto it = m.pairs.find(key_of(f));
      if (it == m.pairs.end()) continue;  // a watched-variable residue, not the model's
      const model::pair_rec& p = it->second;
      const std::uint64_t now = model::total(p);
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
    if (p.suppression < 0) continue;
    const std::uint64_t now = model::total(p);
    if (now > p.counted) {
      the_suppressions().add_hits(static_cast<std::size_t>(p.suppression), now - p.counted);
      p.counted = now;
    }
  }
}

void model_taken_locked(const std::vector<finding>& taken) noexcept {
  model::model_state& m = model::the_model();
  for (const finding& f : taken) {
    try {
      const auto it = m.pairs.find(key_of(f));
      if (it != m.pairs.end()) it->second.offset = model::total(it->second);
    } catch (...) {
    }
  }
}

}  // namespace ctxpool::diagnostics::detail
