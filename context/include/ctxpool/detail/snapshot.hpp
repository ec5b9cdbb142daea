// What executors use to carry a context to other work: a snapshot of the
// current context (captured_context) and the scope that runs work in a fresh
// context holding one (fresh_context_scope).
//
// @par Thread safety
// A captured_context may be moved to and used on any thread; a
// fresh_context_scope acts on the calling thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include <ctxpool/detail/carried.hpp>
#include <ctxpool/detail/config.hpp>
#include <ctxpool/detail/map.hpp>
#include <ctxpool/detail/state.hpp>

namespace ctxpool::detail {

struct cancel_state;

/// A cancellation that stands in for the one the current context carries
/// without being allocated yet: a task_group's children run under their
/// group's cancellation, which is made only when someone needs it (see
/// <ctxpool/cancellation.hpp>, where every read of the current
/// cancellation, and every capture, goes through it).
struct cancellation_overlay {
  /// The cancellation (possibly none) the context carries for which this
  /// one stands in; once the context carries another (a cancellation_scope
  /// inside the task), the overlay no longer applies.
  const cancel_state* base;
  /// The real cancellation, made on the first call; lives as long as `owner`.
  const std::shared_ptr<cancel_state>* (*materialise)(const void* owner) noexcept;
  const void* owner;
};

/// The overlay of the task running on this thread, or null. Set by the
/// executor around a task_group child's body, cleared around any other task.
inline constinit thread_local const cancellation_overlay* active_overlay = nullptr;

/// `active_overlay`, for header code (see CTXPOOL_TLS_ACCESSOR).
CTXPOOL_TLS_ACCESSOR const cancellation_overlay*& this_thread_overlay() noexcept {
  CTXPOOL_TLS_FENCE();
  return active_overlay;
}

/// `root` (whose reference is adopted) with the active overlay's
/// cancellation made real and set, if the overlay applies to it; one
/// reference to the result (in cancellation.cpp).
[[nodiscard]] map_node* capture_overlay(map_node* root) noexcept;

/// A snapshot of the current context taken to run work elsewhere.
///
/// Capturing costs at most one reference-count increment (a thread capturing
/// one context repeatedly takes references in batches); running enters a private
/// box that no handle refers to, so entering skips the busy check. Executors
/// build on it; users have `copy_context()` and `bind_context`.
class captured_context {
 public:
  captured_context() noexcept = default;

  /// The calling thread's current context, as it is now.
  [[nodiscard]] static captured_context capture() noexcept {
    captured_context result;
    thread_state& state = this_thread_state();
    if (context_box* box = state.current; box != nullptr) {
      if (box->root != nullptr) state.reserve.take(box->root);
      result.root_ = box->root;
      result.lineage_ = box->lineage;
    }
    if (CTXPOOL_UNLIKELY(carrying())) result.root_ = capture_carried(result.root_);
    if (CTXPOOL_UNLIKELY(this_thread_overlay() != nullptr)) {
      result.root_ = capture_overlay(result.root_);
    }
    return result;
  }

  captured_context(const captured_context& other) noexcept
      : root_(other.root_), lineage_(other.lineage_) {
    map_add_ref(root_);
  }
  captured_context(captured_context&& other) noexcept
      : root_(std::exchange(other.root_, nullptr)), lineage_(other.lineage_) {}
  captured_context& operator=(captured_context other) noexcept {
    std::swap(root_, other.root_);
    std::swap(lineage_, other.lineage_);
    return *this;
  }
  ~captured_context() { map_release(root_); }

  /// How many variables the snapshot holds.
  [[nodiscard]] std::size_t size() const noexcept { return map_size(root_); }

  /// Gives up the snapshot's map (one reference, null for an empty context),
  /// so that a queued task can keep it in one word; `adopt` takes it back.
  [[nodiscard]] map_node* release_map() noexcept { return std::exchange(root_, nullptr); }
  /// The identity a continuation keeps; a fresh task does not need it.
  [[nodiscard]] std::uint64_t lineage() const noexcept { return lineage_; }
  /// A snapshot owning `map`'s reference (from release_map) with `lineage`.
  [[nodiscard]] static captured_context adopt(map_node* map, std::uint64_t lineage) noexcept {
    captured_context result;
    result.root_ = map;
    result.lineage_ = lineage;
    return result;
  }

 private:
  friend class fresh_context_scope;
  map_node* root_ = nullptr;
  std::uint64_t lineage_ = 0;
};

/// Runs the enclosing block in a fresh context holding a captured snapshot.
///
/// `continuation` keeps the snapshot's identity, so tokens set before it was
/// captured can be reset inside: used when resuming a coroutine or running a
/// handler bound with bind_context. Otherwise the block gets a new context, as
/// each submitted task does.
class fresh_context_scope {
 public:
  fresh_context_scope(const captured_context& snapshot, bool continuation) noexcept
      : state_(this_thread_state()), previous_(state_.current) {
    map_add_ref(snapshot.root_);
    enter(snapshot.root_, snapshot.lineage_, continuation);
  }
  /// Consumes the snapshot: saves a reference-count round trip per task. On
  /// a pool worker the reference outlives the scope as a spare (see
  /// worker_capture_reserve), which the pool counts as work until it is
  /// given back.
  fresh_context_scope(captured_context&& snapshot, bool continuation) noexcept
      : state_(this_thread_state()), previous_(state_.current), consumed_(true) {
    enter(std::exchange(snapshot.root_, nullptr), snapshot.lineage_, continuation);
  }
  ~fresh_context_scope() {
    if (CTXPOOL_UNLIKELY(carried_saved_ != nullptr)) restore_carried(carried_saved_);
    state_.current = previous_;
    if (consumed_) {
      release_task_reference(state_, box_.root, previous_);
    } else {
      bump_epoch(state_);
      map_release(box_.root);
    }
  }
  fresh_context_scope(const fresh_context_scope&) = delete;
  fresh_context_scope& operator=(const fresh_context_scope&) = delete;

 private:
  void enter(map_node* adopted_root, std::uint64_t lineage, bool continuation) noexcept {
    state_.reserve.before_task(adopted_root);
    box_.root = adopted_root;
    box_.lineage = continuation && lineage != 0 ? lineage : new_lineage();
    box_.entered.store(true, std::memory_order_relaxed);
    state_.current = &box_;
    bump_epoch(state_);
    if (CTXPOOL_UNLIKELY(carrying())) carried_saved_ = install_carried(adopted_root);
  }

  thread_state& state_;  // the scope lives in one frame of one thread, never a coroutine's
  context_box box_;
  context_box* previous_;
  map_node* carried_saved_ = nullptr;  // the thread's own carried values (see carried.hpp)
  bool consumed_ = false;
};

}  // namespace ctxpool::detail
