// Context maps, boxes, and the slow paths of context_var.
#include <ctxpool/context.hpp>

#include <cxxabi.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "observer.hpp"

namespace ctxpool {
namespace detail {

// ---------------------------------------------------------------------------
// Values.

void value_base::destroy() const noexcept {
  if (residue_observer* obs = observer()) obs->on_value_destroyed(this);
  delete this;
}

// ---------------------------------------------------------------------------
// The persistent map.

namespace {

[[nodiscard]] std::uint32_t index_bit(std::uint32_t id, unsigned shift) noexcept {
  return std::uint32_t{1} << ((id >> shift) & 31U);
}

[[nodiscard]] std::size_t node_bytes(std::size_t slots) noexcept {
  return sizeof(map_node) + slots * sizeof(void*);
}

[[nodiscard]] std::size_t slot_count(const map_node* node) noexcept {
  return static_cast<std::size_t>(popcount32(node->leaves) + popcount32(node->children));
}

[[nodiscard]] map_node* allocate_node(std::uint32_t leaves, std::uint32_t children,
                                      std::uint32_t size) {
  const std::size_t slots =
      static_cast<std::size_t>(popcount32(leaves) + popcount32(children));
  void* memory = small_alloc(node_bytes(slots));
  auto* node = static_cast<map_node*>(memory);
  new (&node->refs) std::atomic<std::uint32_t>(1);
  node->leaves = leaves;
  node->children = children;
  node->size = size;
  return node;
}

void add_ref_slot(void* slot, bool is_leaf) noexcept {
  if (is_leaf) {
    static_cast<const value_base*>(slot)->add_ref();
  } else {
    map_add_ref(static_cast<const map_node*>(slot));
  }
}

// Builds a copy of `node` in which position `bit` is changed: `leaf` (or
// `child`) is stored there, or the position is emptied when both are null.
// References: every slot carried over from `node` gains one; `leaf` and
// `child` are adopted.
[[nodiscard]] map_node* copy_with(const map_node* node, std::uint32_t bit,
                                  const value_base* leaf, map_node* child,
                                  std::uint32_t new_size) {
  std::uint32_t leaves = node->leaves & ~bit;
  std::uint32_t children = node->children & ~bit;
  if (leaf != nullptr) leaves |= bit;
  if (child != nullptr) children |= bit;
  map_node* copy = allocate_node(leaves, children, new_size);

  void* const* from = node->slots();
  void** to = copy->slots();
  const int old_leaf_count = popcount32(node->leaves);
  // Leaves, in position order.
  for (std::uint32_t rest = leaves; rest != 0; rest &= rest - 1) {
    const std::uint32_t b = rest & (~rest + 1);
    if (b == bit) {
      *to++ = const_cast<value_base*>(leaf);
    } else {
      void* carried = from[popcount32(node->leaves & (b - 1))];
      add_ref_slot(carried, true);
      *to++ = carried;
    }
  }
  for (std::uint32_t rest = children; rest != 0; rest &= rest - 1) {
    const std::uint32_t b = rest & (~rest + 1);
    if (b == bit) {
      *to++ = child;
    } else {
      void* carried = from[old_leaf_count + popcount32(node->children & (b - 1))];
      add_ref_slot(carried, false);
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
    node->slots()[0] = child;
    return node;
  }
  a->add_ref();
  map_node* node = allocate_node(bit_a | bit_b, 0, 2);
  const bool a_first = bit_a < bit_b;
  node->slots()[0] = const_cast<value_base*>(a_first ? a : b);
  node->slots()[1] = const_cast<value_base*>(a_first ? b : a);
  return node;
}

[[nodiscard]] map_node* insert_at(const map_node* node, const value_base* value, unsigned shift) {
  const std::uint32_t id = value->var_id();
  const std::uint32_t bit = index_bit(id, shift);
  if ((node->leaves & bit) != 0) {
    const auto* existing =
        static_cast<const value_base*>(node->slots()[popcount32(node->leaves & (bit - 1))]);
    if (existing->var_id() == id) return copy_with(node, bit, value, nullptr, node->size);
    map_node* child = make_pair(existing, value, shift + 5);
    return copy_with(node, bit, nullptr, child, node->size + 1);
  }
  if ((node->children & bit) != 0) {
    const auto* child = static_cast<const map_node*>(
        node->slots()[popcount32(node->leaves) + popcount32(node->children & (bit - 1))]);
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
        static_cast<const value_base*>(node->slots()[popcount32(node->leaves & (bit - 1))]);
    if (existing->var_id() != id) return nullptr;
    found = true;
    if (node->size == 1) return nullptr;
    return copy_with(node, bit, nullptr, nullptr, node->size - 1);
  }
  if ((node->children & bit) != 0) {
    const auto* child = static_cast<const map_node*>(
        node->slots()[popcount32(node->leaves) + popcount32(node->children & (bit - 1))]);
    map_node* new_child = erase_at(child, id, shift + 5, found);
    if (!found) return nullptr;
    if (new_child == nullptr) {
      if (node->size == child->size) return nullptr;
      return copy_with(node, bit, nullptr, nullptr, node->size - child->size);
    }
    if (new_child->size == 1 && new_child->children == 0) {
      // Pull a lone value up so that the trie stays as shallow as it can be.
      const auto* lone = static_cast<const value_base*>(new_child->slots()[0]);
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
  void* const* slots = node->slots();
  const int leaf_count = popcount32(node->leaves);
  const std::size_t count = slot_count(node);
  for (std::size_t i = 0; i < count; ++i) {
    if (static_cast<int>(i) < leaf_count) {
      static_cast<const value_base*>(slots[i])->release();
    } else {
      map_release(static_cast<const map_node*>(slots[i]));
    }
  }
  small_free(const_cast<map_node*>(node), node_bytes(count));
}

}  // namespace

void map_release(const map_node* node) noexcept {
  if (node != nullptr && drop_ref(node->refs)) destroy_map(node);
}

map_node* map_insert(const map_node* root, const value_base* value) {
  if (root == nullptr) {
    map_node* node = allocate_node(index_bit(value->var_id(), 0), 0, 1);
    node->slots()[0] = const_cast<value_base*>(value);
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
      void*& slot = node->slots()[popcount32(node->leaves & (bit - 1))];
      const auto* existing = static_cast<const value_base*>(slot);
      if (existing->var_id() != id) return nullptr;
      slot = const_cast<value_base*>(value);
      return existing;
    }
    if ((node->children & bit) == 0) return nullptr;
    node = static_cast<map_node*>(
        node->slots()[popcount32(node->leaves) + popcount32(node->children & (bit - 1))]);
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

// ---------------------------------------------------------------------------
// Boxes, lineages, variables.

context_box* context_box::create(map_node* adopted_root, std::uint64_t lineage) {
  void* memory = small_alloc(sizeof(context_box));
  auto* box = new (memory) context_box;
  box->root = adopted_root;
  box->lineage = lineage;
  if (residue_observer* obs = observer()) obs->on_context_created(box);
  return box;
}

void context_box::destroy() noexcept {
  if (residue_observer* obs = observer()) obs->on_context_destroyed(this);
  map_release(root);
  this->~context_box();
  small_free(this, sizeof(context_box));
}

namespace {

// Lineage ids are handed to threads in blocks so that taking one is a plain
// increment.
constexpr std::uint64_t lineage_block = 1U << 16;
constinit std::atomic<std::uint64_t> next_lineage_block{1};
struct lineage_range {
  std::uint64_t next;
  std::uint64_t end;
};
constinit thread_local lineage_range lineage_tls{0, 0};

// The base context of a thread: created on the thread's first `set`, released
// at thread exit (which destroys the values it holds).
struct base_context_owner {
  context_box* box = nullptr;
  ~base_context_owner() {
    if (box == nullptr) return;
    if (tls.current == box) tls.current = nullptr;
    bump_epoch();
    box->release();
  }
};

// Spare references are given back at thread exit, after which none are taken.
struct capture_reserve_drain {
  ~capture_reserve_drain() {
    tls.reserve.dead = true;
    tls.reserve.held = false;
    if (tls.reserve.spare != 0) return_capture_reserve();
  }
};

// The most references a capture takes ahead: a refill per this many captures.
constexpr std::uint32_t max_capture_reserve = 63;

/// Points the reserve at `map`, giving back the spares it held for another.
void aim_capture_reserve(const map_node* map) noexcept {
  capture_reserve& reserve = tls.reserve;
  if (reserve.map == map) return;
  return_capture_reserve();
  reserve.map = map;
  reserve.streak = 0;
}

void arm_capture_reserve_drain() noexcept {
  if (tls.reserve.armed) return;
  tls.reserve.armed = true;
  static thread_local capture_reserve_drain drain;
  (void)drain;
}

}  // namespace

void hold_references_across_tasks() noexcept {
  capture_reserve& reserve = tls.reserve;
  if (reserve.dead) return;
  arm_capture_reserve_drain();
  reserve.held = true;
  reserve.home = tls.current;
}

void stop_holding_references() noexcept {
  tls.reserve.held = false;
  return_capture_reserve();
}

void keep_released_reference(const map_node* map) noexcept {
  capture_reserve& reserve = tls.reserve;  // held, so the thread is not exiting
  aim_capture_reserve(map);
  if (reserve.spare >= max_held_references) {
    // We hold more than we give back, so this cannot free the map.
    constexpr std::uint32_t give_back = max_held_references / 2;
    map->refs.fetch_sub(give_back, std::memory_order_release);
    reserve.spare -= give_back;
  }
  ++reserve.spare;
}

void return_capture_reserve() noexcept {
  capture_reserve& reserve = tls.reserve;
  const std::uint32_t spare = std::exchange(reserve.spare, 0);
  if (spare == 0) return;
  if (reserve.map->refs.fetch_sub(spare, std::memory_order_acq_rel) == spare) {
    destroy_map(reserve.map);
  }
}

void refill_capture_reserve(const map_node* map) noexcept {
  capture_reserve& reserve = tls.reserve;
  aim_capture_reserve(map);
  // Reserve only for a thread capturing one map again and again in one epoch
  // (a producer's loop): a task capturing once or twice before its context
  // ends would only give the spare references back. A worker's spares
  // outlive its tasks' contexts, so its streak runs across them.
  if (!reserve.held && reserve.streak_epoch != current_epoch()) {
    reserve.streak_epoch = current_epoch();
    reserve.streak = 0;
  }
  if (reserve.streak < max_capture_reserve) ++reserve.streak;
  std::uint32_t extra = reserve.streak > 2 ? reserve.streak : 0;
  if (extra != 0 && reserve.dead) extra = 0;
  if (extra != 0) arm_capture_reserve_drain();
  map->refs.fetch_add(1 + extra, std::memory_order_relaxed);
  reserve.spare = extra;
}

std::uint64_t new_lineage() noexcept {
  if (CTXPOOL_UNLIKELY(lineage_tls.next == lineage_tls.end)) {
    const std::uint64_t block = next_lineage_block.fetch_add(1, std::memory_order_relaxed);
    lineage_tls.next = block * lineage_block;
    lineage_tls.end = lineage_tls.next + lineage_block;
  }
  return lineage_tls.next++;
}

context_box& current_box() {
  if (CTXPOOL_LIKELY(tls.current != nullptr)) return *tls.current;
  static thread_local base_context_owner owner;
  if (owner.box == nullptr) owner.box = context_box::create(nullptr, new_lineage());
  // The thread's base context counts as entered for its whole life.
  owner.box->entered.store(true, std::memory_order_relaxed);
  tls.current = owner.box;
  bump_epoch();
  return *owner.box;
}

std::uint32_t new_var_id() {
  // Ids key the maps and the get() cache; bit 31 is the cache's default flag.
  static constinit std::atomic<std::uint32_t> next{1};
  const std::uint32_t id = next.fetch_add(1, std::memory_order_relaxed);
  if (id >= (std::uint32_t{1} << 31)) {
    throw std::length_error("ctxpool: more than 2^31 context variables were created");
  }
  return id;
}

void throw_already_entered() {
  throw context_error(
      "cannot enter context: it is already entered (a context can be entered by one thread at a "
      "time; use copy_context() to run the same values elsewhere)");
}

[[noreturn]] void throw_missing_in_context(std::string_view var_name) {
  throw lookup_error("context_var '" + std::string(var_name) + "' is not set in this context");
}

namespace {

void cache_put(std::uint32_t id, const void* value) noexcept {
  get_cache_entry& entry = tls.cache[id & (get_cache_size - 1)];
  entry.tag = cache_tag(id);
  entry.value = value;
}

}  // namespace

const void* lookup_set_value(std::uint32_t var_id) noexcept {
  const context_box* box = tls.current;
  const value_base* value = box == nullptr ? nullptr : map_find(box->root, var_id);
  if (value == nullptr) return nullptr;
  cache_put(var_id, value->data());
  return value->data();
}

const void* lookup_or_throw(std::uint32_t var_id, const void* default_value,
                            std::string_view var_name) {
  if (const void* value = lookup_set_value(var_id)) return value;
  if (default_value != nullptr) {
    cache_put(var_id, default_value);
    return default_value;
  }
  throw lookup_error("context_var '" + std::string(var_name) +
                     "' has no value in the current context and no default: set it before "
                     "reading, or use get_or()");
}

token_state set_value(const value_base* value, std::string_view var_name,
                      const std::type_info& type) {
  // Adopt `value` first so that it is released if anything below throws.
  struct release_on_throw {
    const value_base* value;
    ~release_on_throw() {
      if (value != nullptr) value->release();
    }
  } guard{value};

  context_box& box = current_box();
  if (residue_observer* obs = observer()) obs->on_value_created(value, var_name, demangle(type));
  const value_base* old = map_find(box.root, value->var_id());
  if (old != nullptr) {
    // Overwriting in a map nobody else shares: no copy, and the token takes
    // over the map's reference to the old value.
    if (const value_base* displaced = map_replace_in_place(box.root, value)) {
      guard.value = nullptr;
      bump_epoch();
      return token_state(value->var_id(), box.lineage, displaced);
    }
  }
  map_node* new_root = map_insert(box.root, value);
  guard.value = nullptr;  // the new map holds it now
  if (old != nullptr) old->add_ref();
  map_release(box.root);
  box.root = new_root;
  bump_epoch();
  return token_state(value->var_id(), box.lineage, old);
}

void reset_value(std::uint32_t var_id, std::string_view var_name, token_state& token) {
  if (token.used_) {
    throw token_error(token_error::reason::already_used,
                      "token for context_var '" + std::string(var_name) +
                          "' has already been used once (or was moved from)");
  }
  if (token.var_id_ != var_id) {
    throw token_error(token_error::reason::other_variable,
                      "token was created by a different context_var than '" +
                          std::string(var_name) + "'");
  }
  context_box* box = tls.current;
  if (box == nullptr || box->lineage != token.lineage_) {
    throw token_error(token_error::reason::other_context,
                      "token for context_var '" + std::string(var_name) +
                          "' was created in a different context; reset it inside the context "
                          "that set it");
  }
  map_node* new_root = nullptr;
  if (token.old_ != nullptr) {
    token.old_->add_ref();  // the token keeps its own, for old_value()
    if (const value_base* displaced = map_replace_in_place(box->root, token.old_)) {
      displaced->release();
      token.used_ = true;
      bump_epoch();
      return;
    }
    new_root = map_insert(box->root, token.old_);
  } else {
    new_root = map_erase(box->root, var_id);
  }
  map_release(box->root);
  box->root = new_root;
  token.used_ = true;
  bump_epoch();
}

std::string demangle(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  std::string result = status == 0 && name ? name.get() : type.name();
  // The standard library's spelling of std::string is not what users wrote.
  constexpr std::string_view long_string =
      "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >";
  for (std::size_t at; (at = result.find(long_string)) != std::string::npos;) {
    result.replace(at, long_string.size(), "std::string");
  }
  return result;
}

}  // namespace detail

context::context() : box_(detail::context_box::create(nullptr, detail::new_lineage())) {}

context copy_context() {
  const detail::context_box* current = detail::tls.current;
  detail::map_node* root = current == nullptr ? nullptr : current->root;
  detail::map_add_ref(root);
  if (CTXPOOL_UNLIKELY(detail::carrying())) root = detail::capture_carried(root);
  return context(detail::context_box::create(root, detail::new_lineage()));
}

}  // namespace ctxpool
