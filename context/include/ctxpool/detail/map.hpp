// The persistent (immutable, structurally shared) map behind every context.
//
// A hash array mapped trie keyed by the variable's id, which is already unique,
// so the id is its own hash and no two keys collide. `set` copies only the path
// to the changed entry (O(log32 n)); a snapshot is one reference-count
// increment. Nodes and values are reference counted and freed by whichever
// thread drops the last reference.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <new>
#include <utility>

#include <ctxpool/detail/config.hpp>
#include <ctxpool/detail/small_alloc.hpp>

namespace ctxpool::detail {

/// Population count that stays inline: without -mpopcnt, std::popcount on
/// x86-64 becomes a call into libgcc, which tripled the cost of a map update.
[[nodiscard]] constexpr int popcount32(std::uint32_t x) noexcept {
#if defined(__POPCNT__) || !(defined(__x86_64__) || defined(__i386__))
  return std::popcount(x);
#else
  x = x - ((x >> 1) & 0x55555555U);
  x = (x & 0x33333333U) + ((x >> 2) & 0x33333333U);
  x = (x + (x >> 4)) & 0x0F0F0F0FU;
  return static_cast<int>((x * 0x01010101U) >> 24);
#endif
}

/// Shared drop logic: the load-before-decrement skips the locked instruction
/// when we hold the only reference, the common case for short-lived values.
inline bool drop_ref(std::atomic<std::uint32_t>& refs) noexcept {
  if (refs.load(std::memory_order_acquire) == 1) return true;
  return refs.fetch_sub(1, std::memory_order_acq_rel) == 1;
}

/// A type-erased, reference-counted value held by one or more context maps.
class value_base {
 public:
  value_base(const value_base&) = delete;
  value_base& operator=(const value_base&) = delete;

  [[nodiscard]] std::uint32_t var_id() const noexcept { return var_id_; }
  [[nodiscard]] const void* data() const noexcept { return data_; }

  void add_ref() const noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() const noexcept {
    if (drop_ref(refs_)) destroy();
  }

 protected:
  value_base(std::uint32_t var_id, const void* data) noexcept : var_id_(var_id), data_(data) {}
  virtual ~value_base() = default;

 private:
  void destroy() const noexcept;  // tells the lifecycle observer, then deletes

  mutable std::atomic<std::uint32_t> refs_{1};
  std::uint32_t var_id_;
  const void* data_;
};

/// The concrete holder of one value of type T.
template <class T>
class value_holder final : public value_base {
 public:
  template <class... Args>
  explicit value_holder(std::uint32_t var_id, Args&&... args)
      : value_base(var_id, &value_), value_(std::forward<Args>(args)...) {}

  static void* operator new(std::size_t size) { return small_alloc(size); }
  static void operator delete(void* block, std::size_t size) noexcept { small_free(block, size); }

 private:
  ~value_holder() override = default;
  friend class value_base;
  T value_;
};

/// An interior node: leaves first (one per set bit of `leaves`), then children.
struct map_node {
  mutable std::atomic<std::uint32_t> refs;
  std::uint32_t leaves;    // bitmap of positions holding a value
  std::uint32_t children;  // bitmap of positions holding a deeper node
  std::uint32_t size;      // values in this subtree

  /// The values, then the deeper nodes, in position order.
  [[nodiscard]] void* const* entries() const noexcept {
    return reinterpret_cast<void* const*>(this + 1);
  }
  [[nodiscard]] void** entries() noexcept { return reinterpret_cast<void**>(this + 1); }
};
static_assert(sizeof(map_node) == 16 && alignof(map_node) <= alignof(void*) * 2);

inline void map_add_ref(const map_node* node) noexcept {
  if (node != nullptr) node->refs.fetch_add(1, std::memory_order_relaxed);
}
void map_release(const map_node* node) noexcept;
/// Drops `count` references to `node` (not null) at once, destroying it with
/// the last: how the capture reserve gives its spares back.
void map_release_many(const map_node* node, std::uint32_t count) noexcept;

/// The value stored for `id`, or nullptr. Never allocates, never throws.
inline const value_base* map_find(const map_node* node, std::uint32_t id) noexcept {
  for (unsigned shift = 0; node != nullptr; shift += 5) {
    const std::uint32_t bit = std::uint32_t{1} << ((id >> shift) & 31U);
    if ((node->leaves & bit) != 0) {
      const auto* value =
          static_cast<const value_base*>(node->entries()[popcount32(node->leaves & (bit - 1))]);
      return value->var_id() == id ? value : nullptr;
    }
    if ((node->children & bit) == 0) return nullptr;
    node = static_cast<const map_node*>(
        node->entries()[popcount32(node->leaves) + popcount32(node->children & (bit - 1))]);
  }
  return nullptr;
}

/// A new root with `value` stored under its id; takes over the caller's
/// reference to `value`. `root` is left unchanged (and keeps its references).
[[nodiscard]] map_node* map_insert(const map_node* root, const value_base* value);

/// A new root without `id` (nullptr when that leaves the map empty). When `id`
/// is absent the result is `root` itself with one more reference.
[[nodiscard]] map_node* map_erase(const map_node* root, std::uint32_t id);

/// Overwrites the value stored under `value`'s id in place when every node on
/// the way is referenced only once (no snapshot can see the change), adopting
/// the caller's reference to `value`. @returns the displaced value, whose
/// reference passes to the caller, or nullptr when nothing was changed.
[[nodiscard]] const value_base* map_replace_in_place(map_node* root,
                                                     const value_base* value) noexcept;

[[nodiscard]] inline std::size_t map_size(const map_node* root) noexcept {
  return root == nullptr ? 0 : root->size;
}

}  // namespace ctxpool::detail
