// The finding store (finding_store.hpp): recording, deduplication, hand-over.
#include "finding_store.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string_view>

#include "suppressions.hpp"

namespace ctxpool::diagnostics::detail {
namespace {

constinit std::atomic<std::uint64_t> occurrence_clock{0};

void mix(std::size_t& seed, std::size_t value) noexcept {
  seed ^= value + 0x9E3779B97F4A7C15ULL + (seed << 6) + (seed >> 2);
}

void mix(std::size_t& seed, const code_location& site) noexcept {
  // As code_location's ==: file, line, column and function; without a line,
  // the instruction and function.
  mix(seed, std::hash<std::string_view>{}(site.function_name()));
  if (site.line() != 0) {
    mix(seed, std::hash<std::string_view>{}(site.file_name()));
    mix(seed, site.line());
    mix(seed, site.column());
  } else {
    mix(seed, site.pc());
  }
}

}  // namespace

finding_key key_of(const finding& f) {
  return {
      f.kind, f.variable, f.type, f.site, f.write_site, f.task.submit_site, f.writer.submit_site};
}

std::size_t finding_key_hash::operator()(const finding_key& key) const noexcept {
  std::size_t seed = static_cast<std::size_t>(key.kind);
  mix(seed, std::hash<std::string>{}(key.variable));
  mix(seed, std::hash<std::string>{}(key.type));
  mix(seed, key.site);
  mix(seed, key.write_site);
  mix(seed, key.submit_site);
  mix(seed, key.writer_submit_site);
  return seed;
}

finding_store& the_store() {
  static finding_store* instance = new finding_store;  // never destroyed
  return *instance;
}

std::uint64_t next_occurrence() noexcept {
  return occurrence_clock.fetch_add(1, std::memory_order_relaxed) + 1;
}

std::uint64_t last_occurrence() noexcept {
  return occurrence_clock.load(std::memory_order_relaxed);
}

placement record_locked(finding_store& store, finding f) {
  const std::uint64_t generation = store.generation.load(std::memory_order_relaxed);
  if (const auto rule = the_suppressions().match(f)) return {generation, *rule, true, false};
  if (f.last_seen == 0) f.last_seen = next_occurrence();
  const auto [it, inserted] = store.index.try_emplace(key_of(f), store.pending.size());
  if (!inserted) {
    finding& earlier = store.pending[it->second];
    earlier.count += f.count;
    earlier.last_seen = std::max(earlier.last_seen, f.last_seen);
    return {generation, it->second, false, false};
  }
  const placement where{generation, store.pending.size(), false, store.halt_on_error};
  store.pending.push_back(f);
  if (store.print) {
    const std::string text = format_finding(f);
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
  }
  return where;
}

void hand_over_locked(finding_store& store, const std::vector<finding>& taken) {
  store.handled.insert(store.handled.end(), taken.begin(), taken.end());
  store.index.clear();
  for (std::size_t i = 0; i < store.pending.size(); ++i)
    store.index.emplace(key_of(store.pending[i]), i);
  store.generation.fetch_add(1, std::memory_order_release);
}

std::vector<finding> reported_findings_locked(const finding_store& store) {
  std::vector<finding> all = store.handled;
  std::unordered_map<finding_key, std::size_t, finding_key_hash> at;
  for (std::size_t i = 0; i < all.size(); ++i) at.emplace(key_of(all[i]), i);
  for (const finding& f : store.pending) {
    const auto [it, inserted] = at.try_emplace(key_of(f), all.size());
    if (inserted) {
      all.push_back(f);
    } else {
      all[it->second].count += f.count;
      all[it->second].left_dirty = std::max(all[it->second].left_dirty, f.left_dirty);
    }
  }
  return all;
}

}  // namespace ctxpool::diagnostics::detail
