// Per-thread snapshot and diff of the discovered variables (portable: only
// the layout comes from the platform).
#include "tls_snapshot.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <numeric>

namespace ctxpool::diagnostics::detail::plain_tls {

void thread_snapshot::bind(const tls_layout& layout) {
  thread_blocks(layout, blocks_);
  initialised_.resize(layout.modules.size(), false);
  for (std::size_t m = 0; m < layout.modules.size(); ++m) {
    if (initialised_[m] || blocks_[m] == nullptr) continue;
    initialised_[m] = true;
    for (void (*init)() : layout.modules[m].tls_inits) {
      try {
        init();
      } catch (...) {
        // A throwing thread_local constructor throws again at its first use
        // in the task, where the program expects it.
      }
    }
  }
  layout_ = &layout;

  // Variables of each module sorted by address, adjacent ones merged.
  std::vector<std::uint32_t> order(layout.variables.size());
  std::iota(order.begin(), order.end(), 0U);
  std::erase_if(order,
                [&](std::uint32_t v) { return blocks_[layout.variables[v].module] == nullptr; });
  auto addr_of = [&](std::uint32_t v) {
    return blocks_[layout.variables[v].module] + layout.variables[v].offset;
  };
  std::sort(order.begin(), order.end(),
            [&](std::uint32_t a, std::uint32_t b) { return addr_of(a) < addr_of(b); });

  spans_.clear();
  entries_.clear();
  guards_.clear();
  entry_of_var_.assign(layout.variables.size(), -1);
  std::size_t buf = 0;
  for (std::uint32_t v : order) {
    const std::uint32_t module = layout.variables[v].module;
    unsigned char* a = addr_of(v);
    std::size_t size = layout.variables[v].size;
    // A small gap (alignment padding, a skipped variable) is cheaper copied
    // and compared than a span of its own: spans stay few however the
    // variables are laid out. Never across modules: the bytes between two
    // blocks are not ours to read.
    const bool joins = !spans_.empty() && span_module_ == module &&
                       a <= spans_.back().addr + spans_.back().size + max_gap;
    if (!joins) {
      spans_.push_back({a, size, buf, static_cast<std::uint32_t>(entries_.size()), 0});
      span_module_ = module;
      buf += size;
    } else if (a + size > spans_.back().addr + spans_.back().size) {
      std::size_t grow =
          static_cast<std::size_t>(a + size - (spans_.back().addr + spans_.back().size));
      spans_.back().size += grow;
      buf += grow;
    }
    span& s = spans_.back();
    const auto at = static_cast<std::size_t>(a - s.addr);
    entry e{v, a, size, s.buf + at, -1, nullptr, at, at + size, at + size};
    if (s.end_entry > s.first_entry) e.reach = std::max(e.reach, entries_.back().reach);
    if (layout.variables[v].guard >= 0) {
      e.guard_addr = blocks_[module] + layout.variables[v].guard;
      e.guard_buf = static_cast<std::ptrdiff_t>(guards_.size());
      guards_.push_back(e.guard_addr);
    }
    entry_of_var_[v] = static_cast<std::int32_t>(entries_.size());
    entries_.push_back(e);
    s.end_entry = static_cast<std::uint32_t>(entries_.size());
  }
  tu_guards_.assign(layout.modules.size(), {0, 0});
  for (std::size_t m = 0; m < layout.modules.size(); ++m) {
    tu_guards_[m].first = static_cast<std::uint32_t>(guards_.size());
    if (blocks_[m] != nullptr) {
      for (std::size_t off : layout.modules[m].tu_guards) guards_.push_back(blocks_[m] + off);
    }
    tu_guards_[m].end = static_cast<std::uint32_t>(guards_.size());
  }
  guard_base_ = buf;
  buf_.assign(buf + guards_.size(), 0);
}

void thread_snapshot::take() noexcept {
  for (const span& s : spans_) std::memcpy(buf_.data() + s.buf, s.addr, s.size);
  unsigned char* g = buf_.data() + guard_base_;
  for (unsigned char* addr : guards_) *g++ = *addr;
}

bool thread_snapshot::is_initialisation(const entry& e) const noexcept {
  const unsigned char* g = buf_.data() + guard_base_;
  if (e.guard_addr != nullptr) {
    return g[e.guard_buf] == 0 && *e.guard_addr != 0;
  }
  const tls_variable& v = layout_->variables[e.var];
  const tls_module& m = layout_->modules[v.module];
  if (!m.tls_inits.empty()) return false;  // bind() initialised the module before any task
  bool guard_set = false;
  for (std::uint32_t i = tu_guards_[v.module].first; i < tu_guards_[v.module].end; ++i) {
    guard_set = guard_set || (g[i] == 0 && *guards_[i] != 0);
  }
  if (!guard_set) return false;
  // Did the task start from the template's bytes (never touched on this thread)?
  const unsigned char* before_bytes = buf_.data() + e.buf;
  for (std::size_t i = 0; i < e.size; ++i) {
    std::size_t at = v.offset + i;
    unsigned char tmpl = at < m.image_size ? m.image[at] : 0;
    if (before_bytes[i] != tmpl) return false;
  }
  return true;
}

namespace {

/// The offset of the first byte in [from, size) where `a` and `b` differ, or
/// `size`: one pass over the bytes up to the difference, never a compare per
/// variable. memcmp (the C library's vector code) skips equal 512-byte
/// chunks; inside the one that differs, 64-byte blocks compared as eight
/// words or-ed together, then words, find the byte.
std::size_t first_difference(const unsigned char* a, const unsigned char* b, std::size_t from,
                             std::size_t size) noexcept {
  constexpr std::size_t word = sizeof(std::uint64_t), block = 8 * word, chunk = 8 * block;
  auto load = [](const unsigned char* p) {
    std::uint64_t w;
    std::memcpy(&w, p, word);
    return w;
  };
  std::size_t at = from;
  while (at + chunk <= size && std::memcmp(a + at, b + at, chunk) == 0) at += chunk;
  for (; at + block <= size; at += block) {
    std::uint64_t x = 0;
    for (std::size_t k = 0; k < block; k += word) x |= load(a + at + k) ^ load(b + at + k);
    if (x != 0) break;
  }
  for (; at + word <= size; at += word) {
    if (const std::uint64_t x = load(a + at) ^ load(b + at); x != 0) {
      const int bit =
          std::endian::native == std::endian::little ? std::countr_zero(x) : std::countl_zero(x);
      return at + static_cast<std::size_t>(bit) / 8;
    }
  }
  for (; at < size; ++at) {
    if (a[at] != b[at]) return at;
  }
  return size;
}

}  // namespace

void thread_snapshot::diff(std::vector<std::uint32_t>& dirty) const {
  for (const span& s : spans_) {
    const unsigned char* before_bytes = buf_.data() + s.buf;
    const entry* first = entries_.data() + s.first_entry;
    const entry* end = entries_.data() + s.end_entry;
    // Only where bytes differ are variables looked at: the cost is the
    // span's bytes plus the changed variables, whatever the span holds.
    std::size_t from = 0;
    while (from < s.size) {
      const std::size_t at = first_difference(before_bytes, s.addr, from, s.size);
      if (at >= s.size) break;
      // Entries are sorted by offset; `reach` (the furthest end up to each)
      // bounds the walk back to the ones that can cover `at` (one, unless
      // variables overlap).
      const entry* after = std::upper_bound(
          first, end, at, [](std::size_t off, const entry& e) { return off < e.begin; });
      std::size_t next = at + 1;
      auto report = [&](const entry& e) {
        next = std::max(next, e.end);
        if (std::memcmp(before_bytes + e.begin, e.addr, e.size) != 0 && !is_initialisation(e)) {
          dirty.push_back(e.var);
        }
      };
      for (const entry* e = after; e != first && (e - 1)->reach > at;) {
        --e;
        if (e->end > at) report(*e);
      }
      // Overlapping variables that start inside the ones just reported.
      for (const entry* e = after; e != end && e->begin < next; ++e) report(*e);
      from = next;
    }
  }
}

unsigned char* thread_snapshot::address(std::uint32_t index) const noexcept {
  if (index >= entry_of_var_.size() || entry_of_var_[index] < 0) return nullptr;
  return entries_[static_cast<std::size_t>(entry_of_var_[index])].addr;
}

const unsigned char* thread_snapshot::before(std::uint32_t index) const noexcept {
  if (index >= entry_of_var_.size() || entry_of_var_[index] < 0) return nullptr;
  return buf_.data() + entries_[static_cast<std::size_t>(entry_of_var_[index])].buf;
}

bool thread_snapshot::changed(std::uint32_t index) const noexcept {
  if (index >= entry_of_var_.size() || entry_of_var_[index] < 0) return false;
  const entry& e = entries_[static_cast<std::size_t>(entry_of_var_[index])];
  return std::memcmp(buf_.data() + e.buf, e.addr, e.size) != 0;
}

}  // namespace ctxpool::diagnostics::detail::plain_tls
