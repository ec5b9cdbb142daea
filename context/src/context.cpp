// Context boxes, lineages, and the slow paths of context_var (the map is in
// map.cpp, the capture reserve in capture.cpp).
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
    bump_epoch(tls);
    box->release();
  }
};

}  // namespace

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
  bump_epoch(tls);
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
  entry.tag = cache_tag(tls, id);
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
      bump_epoch(tls);
      return token_state(value->var_id(), box.lineage, displaced);
    }
  }
  map_node* new_root = map_insert(box.root, value);
  guard.value = nullptr;  // the new map holds it now
  if (old != nullptr) old->add_ref();
  map_release(box.root);
  box.root = new_root;
  bump_epoch(tls);
  return token_state(value->var_id(), box.lineage, old);
}

void reset_value(std::uint32_t var_id, std::string_view var_name, token_state& token) {
  if (token.used_) {
    throw token_error(token_error::reason::already_used,
                      "token for context_var '" + std::string(var_name) +
                          "' has already been used once (or was moved from)");
  }
  if (token.var_id_ != var_id) {
    throw token_error(
        token_error::reason::other_variable,
        "token was created by a different context_var than '" + std::string(var_name) + "'");
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
      bump_epoch(tls);
      return;
    }
    new_root = map_insert(box->root, token.old_);
  } else {
    new_root = map_erase(box->root, var_id);
  }
  map_release(box->root);
  box->root = new_root;
  token.used_ = true;
  bump_epoch(tls);
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
  if (CTXPOOL_UNLIKELY(detail::active_overlay != nullptr)) root = detail::capture_overlay(root);
  return context(detail::context_box::create(root, detail::new_lineage()));
}

}  // namespace ctxpool
