// Per-thread state of the context layer: the current context, the get() cache
// and the capture reserve (capture.hpp).
#pragma once

#include <atomic>
#include <cstdint>

#include <ctxpool/detail/capture.hpp>
#include <ctxpool/detail/carried.hpp>
#include <ctxpool/detail/config.hpp>
#include <ctxpool/detail/map.hpp>

namespace ctxpool::detail {

/// The mutable box that a `context` handle refers to: a map root that `set`
/// replaces, and the flag that stops two threads from entering it at once.
struct context_box {
  std::atomic<std::uint32_t> refs{1};
  std::atomic<bool> entered{false};
  map_node* root = nullptr;  // owned reference; null is the empty map
  // Identity checked by token reset. Boxes made to continue a captured context
  // (a coroutine resumed after co_await, a bound handler) share their source's
  // lineage, so a token set before the suspension can be reset after it.
  std::uint64_t lineage = 0;

  static context_box* create(map_node* adopted_root, std::uint64_t lineage);
  void add_ref() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (drop_ref(refs)) destroy();
  }

 private:
  void destroy() noexcept;
};

/// One entry of the get() cache: `tag` packs (epoch << 32 | var id); `value`
/// points at the set value or at the variable's own default (which get_or,
/// preferring its fallback, tells apart by address).
struct get_cache_entry {
  std::uint64_t tag;
  const void* value;
};

inline constexpr std::uint32_t get_cache_size = 64;  // power of two

/// Everything the get() fast path touches. It is constant-initialised and
/// trivially destructible so that the compiler reaches it through the thread
/// pointer directly, with no TLS wrapper call.
struct alignas(64) thread_state {
  context_box* current;  // null until this thread first needs a context box
  // The epoch, which changes whenever what `current` maps may have changed,
  // kept shifted into a cache tag's top half: get() builds its tag with one
  // `or` (the fast path is bound by instructions, not by loads).
  std::uint64_t epoch_tag;
  capture_reserve reserve;  // capture.hpp
  get_cache_entry cache[get_cache_size];
};

inline constinit thread_local thread_state tls{nullptr, std::uint64_t{1} << 32, {}, {}};

/// This thread's state. Header code, which a user's coroutine may inline,
/// reaches it only through here (see CTXPOOL_TLS_ACCESSOR); the library's
/// own source files hold no coroutine and name `tls` directly.
CTXPOOL_TLS_ACCESSOR thread_state& this_thread_state() noexcept {
  CTXPOOL_TLS_FENCE();
  return tls;
}

/// The cache tag of variable `id` in the current epoch of `state`'s thread.
[[nodiscard]] inline std::uint64_t cache_tag(const thread_state& state, std::uint32_t id) noexcept {
  return state.epoch_tag | id;
}

/// The current epoch (the top half of every current cache tag).
[[nodiscard]] inline std::uint32_t current_epoch() noexcept {
  return static_cast<std::uint32_t>(this_thread_state().epoch_tag >> 32);
}

// The helpers below take the calling thread's state from their caller, which
// reaches it once (under clang each this_thread_state() is a call).

/// Invalidates every get() cache entry of `state`'s thread, keeping the
/// capture reserve's spares (see bump_epoch).
inline void next_epoch(thread_state& state) noexcept {
  state.epoch_tag += std::uint64_t{1} << 32;
  if (CTXPOOL_UNLIKELY(state.epoch_tag == 0)) {
    // After 2^32 switches an old tag could match again: start from clean.
    for (auto& entry : state.cache) entry = {};
    state.epoch_tag = std::uint64_t{1} << 32;
  }
}

/// The map of `state`'s thread's current context (null: empty or none).
[[nodiscard]] inline const map_node* current_root(const thread_state& state) noexcept {
  return state.current != nullptr ? state.current->root : nullptr;
}

/// The current context or its map changed: invalidates every get() cache
/// entry of this thread, and the capture reserve gives its spares back
/// (capture_reserve::on_context_change).
inline void bump_epoch(thread_state& state) noexcept {
  if (CTXPOOL_UNLIKELY(state.reserve.has_spares())) {
    state.reserve.on_context_change(current_root(state));
  }
  next_epoch(state);
}

/// Drops one reference to `map` that a task's context held, as the task
/// ends on the calling thread and `now_current` becomes current again: a
/// worker back between tasks keeps it as a spare for the same map's next
/// capture.
inline void release_task_reference(thread_state& state, const map_node* map,
                                   const context_box* now_current) noexcept {
  if (state.reserve.keeps_task_reference(map, now_current)) {
    next_epoch(state);
    state.reserve.keep_task_reference(map);
    return;
  }
  bump_epoch(state);
  map_release(map);
}

/// The box `set` writes to: the current one, creating this thread's base
/// context on first use.
context_box& current_box();

/// A fresh, process-unique lineage id (cheap: ids are handed out in blocks).
std::uint64_t new_lineage() noexcept;

[[noreturn]] void throw_already_entered();

/// Enters `box` on this thread for the guard's lifetime; stack discipline.
class enter_guard {
 public:
  explicit enter_guard(context_box& box)
      : state_(this_thread_state()), box_(box), previous_(state_.current) {
    if (CTXPOOL_UNLIKELY(box.entered.exchange(true, std::memory_order_acquire))) {
      throw_already_entered();
    }
    state_.current = &box;
    bump_epoch(state_);
    if (CTXPOOL_UNLIKELY(carrying())) carried_saved_ = install_carried(box.root);
  }
  ~enter_guard() {
    if (CTXPOOL_UNLIKELY(carried_saved_ != nullptr)) restore_carried(carried_saved_);
    state_.current = previous_;
    box_.entered.store(false, std::memory_order_release);
    bump_epoch(state_);
  }
  enter_guard(const enter_guard&) = delete;
  enter_guard& operator=(const enter_guard&) = delete;

 private:
  thread_state& state_;  // the guard lives in one frame of one thread, never a coroutine's
  context_box& box_;
  context_box* previous_;
  map_node* carried_saved_ = nullptr;  // the thread's own carried values (see carried.hpp)
};

}  // namespace ctxpool::detail
