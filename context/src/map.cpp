// The persistent map behind every context (detail/map.hpp): insertion,
// erasure and replacement by path copying, and its release.
#include <ctxpool/detail/map.hpp>

#include <atomic>
#include <cstddef>
#include <new>

namespace ctxpool::detail {

namespace {

[[nodiscard]] std::uint32_t index_bit(std::uint32_t id, unsigned shift) noexcept {
  return std::uint32_t{1} << ((id >> shift) & 31U);
}

[[nodiscard]] std::size_t node_bytes(std::size_t entries) noexcept {
  return sizeof(map_node) + entries * sizeof(void*);
}

[[nodiscard]] std::size_t entry_count(const map_node* node) noexcept {
  return static_cast<std::size_t>(popcount32(node->leaves) + popcount32(node->children));
}

[[nodiscard]] map_node* allocate_node(std::uint32_t leaves, std::uint32_t children,
                                      std::uint32_t size) {
  const std::size_t entries = static_cast<std::size_t>(popcount32(leaves) + popcount32(children));
  void* memory = small_alloc(node_bytes(entries));
  auto* node = static_cast<map_node*>(memory);
  new (&node->refs) std::atomic<std::uint32_t>(1);
  node->leaves = leaves;
  node->children = children;
  node->size = size;
  return node;
}

void add_ref_entry(void* entry, bool is_leaf) noexcept {
  if (is_leaf) {
    static_cast<const value_base*>(entry)->add_ref();
  } else {
    map_add_ref(static_cast<const map_node*>(entry));
  }
}

// Builds a copy of `node` in which position `bit` is changed: `leaf` (or
// `child`) is stored there, or the position is emptied when both are null.
// References: every entry carried over from `node` gains one; `leaf` and
// `child` are adopted.
[[nodiscard]] map_node* copy_with(const map_node* node, std::uint32_t bit, const value_base* leaf,
                                  map_node* child, std::uint32_t new_size) {
  std::uint32_t leaves = node->leaves & ~bit;
  std::uint32_t children = node->children & ~bit;
  if (leaf != nullptr) leaves |= bit;
  if (child != nullptr) children |= bit;
  map_node* copy = allocate_node(leaves, children, new_size);

  void* const* from = node->entries();
  void** to = copy->entries();
  const int old_leaf_count = popcount32(node->leaves);
  // Leaves, in position order.
  for (std::uint32_t rest = leaves; rest != 0; rest &= rest - 1) {
    const std::uint32_t b = rest & (~rest + 1);
    if (b == bit) {
      *to++ = const_cast<value_base*>(leaf);
    } else {
      void* carried = from[popcount32(node->leaves & (b - 1))];
      add_ref_entry(carried, true);
      *to++ = carried;
    }
  }
  for (std::uint32_t rest = children; rest != 0; rest &= rest - 1) {
    const std::uint32_t b = rest & (~rest + 1);
    if (b == bit) {
      *to++ = child;
    } else {
      void* carried = from[old_leaf_count + popcount32(node->children & (b - 1))];
      add_ref_entry(carried, false);
      *to++ = carried;
    }
  }
  return copy;
}

// A node (at `shift`) holding two values whose ids differ; `a` gains a
// reference, `b` is adopted.
[[nodiscard]] map_node* make_pair(const value_base* a, const value_base* b, unsigned shift) {
  const std::uint32_t bit_a = index_bit(a->var_id(), shift);
  const std::uint32_t bit_b = index_bit(b->var_id(), shift);
  if (bit_a == bit_b) {
    map_node* child = make_pair(a, b, shift + 5);
    map_node* node = allocate_node(0, bit_a, 2);
    node->entries()[0] = child;
    return node;
  }
  a->add_ref();
  map_node* node = allocate_node(bit_a | bit_b, 0, 2);
  const bool a_first = bit_a < bit_b;
  node->entries()[0] = const_cast<value_base*>(a_first ? a : b);
  node->entries()[1] = const_cast<value_base*>(a_first ? b : a);
  return node;
}

[[nodiscard]] map_node* insert_at(const map_node* node, const value_base* value, unsigned shift) {
  const std::uint32_t id = value->var_id();
  const std::uint32_t bit = index_bit(id, shift);
  if ((node->leaves & bit) != 0) {
    const auto* existing =
        static_cast<const value_base*>(node->entries()[popcount32(node->leaves & (bit - 1))]);
    if (existing->var_id() == id) return copy_with(node, bit, value, nullptr, node->size);
    map_node* child = make_pair(existing, value, shift + 5);
    return copy_with(node, bit, nullptr, child, node->size + 1);
  }
  if ((node->children & bit) != 0) {
    const auto* child = static_cast<const map_node*>(
        node->entries()[popcount32(node->leaves) + popcount32(node->children & (bit - 1))]);
    map_node* new_child = insert_at(child, value, shift + 5);
    return copy_with(node, bit, nullptr, new_child, node->size - child->size + new_child->size);
  }
  return copy_with(node, bit, value, nullptr, node->size + 1);
}

// nullptr result with `found` set: the subtree became empty.
[[nodiscard]] map_node* erase_at(const map_node* node, std::uint32_t id, unsigned shift,
                                 bool& found) {
  const std::uint32_t bit = index_bit(id, shift);
  if ((node->leaves & bit) != 0) {
    const auto* existing =
        static_cast<const value_base*>(node->entries()[popcount32(node->leaves & (bit - 1))]);
    if (existing->var_id() != id) return nullptr;
    found = true;
    if (node->size == 1) return nullptr;
    return copy_with(node, bit, nullptr, nullptr, node->size - 1);
  }
  if ((node->children & bit) != 0) {
    const auto* child = static_cast<const map_node*>(
        node->entries()[popcount32(node->leaves) + popcount32(node->children & (bit - 1))]);
    map_node* new_child = erase_at(child, id, shift + 5, found);
    if (!found) return nullptr;
    if (new_child == nullptr) {
      if (node->size == child->size) return nullptr;
      return copy_with(node, bit, nullptr, nullptr, node->size - child->size);
    }
    if (new_child->size == 1 && new_child->children == 0) {
      // Pull a lone value up so that the trie stays as shallow as it can be.
      const auto* lone = static_cast<const value_base*>(new_child->entries()[0]);
      lone->add_ref();
      map_release(new_child);
      return copy_with(node, bit, lone, nullptr, node->size - 1);
    }
    return copy_with(node, bit, nullptr, new_child, node->size - 1);
  }
  return nullptr;
}

}  // namespace

namespace {

/// Frees `node`, whose last reference was just dropped, and what it held.
void destroy_map(const map_node* node) noexcept {
  void* const* entries = node->entries();
  const int leaf_count = popcount32(node->leaves);
  const std::size_t count = entry_count(node);
  for (std::size_t i = 0; i < count; ++i) {
    if (static_cast<int>(i) < leaf_count) {
      static_cast<const value_base*>(entries[i])->release();
    } else {
      map_release(static_cast<const map_node*>(entries[i]));
    }
  }
  small_free(const_cast<map_node*>(node), node_bytes(count));
}

}  // namespace

void map_release(const map_node* node) noexcept {
  if (node != nullptr && drop_ref(node->refs)) destroy_map(node);
}

void map_release_many(const map_node* node, std::uint32_t count) noexcept {
  if (node->refs.fetch_sub(count, std::memory_order_acq_rel) == count) destroy_map(node);
}

map_node* map_insert(const map_node* root, const value_base* value) {
  if (root == nullptr) {
    map_node* node = allocate_node(index_bit(value->var_id(), 0), 0, 1);
    node->entries()[0] = const_cast<value_base*>(value);
    return node;
  }
  return insert_at(root, value, 0);
}

const value_base* map_replace_in_place(map_node* node, const value_base* value) noexcept {
  const std::uint32_t id = value->var_id();
  for (unsigned shift = 0; node != nullptr; shift += 5) {
    if (node->refs.load(std::memory_order_acquire) != 1) return nullptr;
    const std::uint32_t bit = index_bit(id, shift);
    if ((node->leaves & bit) != 0) {
      void*& entry = node->entries()[popcount32(node->leaves & (bit - 1))];
      const auto* existing = static_cast<const value_base*>(entry);
      if (existing->var_id() != id) return nullptr;
      entry = const_cast<value_base*>(value);
      return existing;
    }
    if ((node->children & bit) == 0) return nullptr;
    node = static_cast<map_node*>(
        node->entries()[popcount32(node->leaves) + popcount32(node->children & (bit - 1))]);
  }
  return nullptr;
}

map_node* map_erase(const map_node* root, std::uint32_t id) {
  if (root == nullptr) return nullptr;
  bool found = false;
  map_node* result = erase_at(root, id, 0, found);
  if (!found) {
    map_add_ref(root);
    return const_cast<map_node*>(root);
  }
  return result;
}

}  // namespace ctxpool::detail
