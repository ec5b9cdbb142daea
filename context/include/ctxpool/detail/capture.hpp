// The capture reserve: spare references to one context map, taken ahead so
// that capturing the same context again and again costs no shared
// read-modify-write per capture.
//
// A thread that submits many tasks from one context would otherwise pay a
// read-modify-write on the map's count per task, on a line that the workers
// releasing the same map keep taking away. The spare references keep a map
// alive no longer than the current context does: whenever the current
// context or its map changes (bump_epoch), they go back.
//
// A pool worker holds its reserve across tasks (worker_capture_reserve): it
// keeps the reference of each task it finishes and spends it on the next
// capture of the same map, so that a tree of tasks spawning tasks from one
// context costs no shared read-modify-write per task. Its spares outlive
// the task that left them only until the worker starts a task in another
// context or runs out of work.
//
// @par Thread safety
// Each thread has its own reserve (thread_state::reserve); nothing here is
// shared. The references it holds are ordinary map references.
#pragma once

#include <cstdint>
#include <utility>

#include <ctxpool/detail/config.hpp>
#include <ctxpool/detail/map.hpp>

namespace ctxpool::detail {

struct context_box;

/// One thread's spare references to the map it captures most.
///
/// Invariant: `spare` references to `map` are owned here, and none when
/// `spare` is 0; outside a held reserve they are for the current context's
/// map, and go back as soon as it changes.
class capture_reserve {
 public:
  /// The most spare references a worker keeps; beyond that it gives half of
  /// them back in one subtraction.
  static constexpr std::uint32_t max_held = 128;

  /// One reference to `map` (not null) for a snapshot of the current context.
  void take(const map_node* map) noexcept {
    if (map_ == map && spare_ != 0) {
      --spare_;
      return;
    }
    refill(map);
  }

  /// Whether spare references are held.
  [[nodiscard]] bool has_spares() const noexcept { return spare_ != 0; }
  /// Whether this is a pool worker's reserve, held across tasks.
  [[nodiscard]] bool held() const noexcept { return held_; }

  /// Gives every spare reference back (destroying the map if they were the last).
  void give_back() noexcept;
  /// At thread exit: gives the spares back and reserves no more.
  void mark_thread_exiting() noexcept;

  /// The current context or its map changed: the spares go back, unless a
  /// worker's spares are for `current_root`, the map now current. Call it
  /// only when has_spares().
  void on_context_change(const map_node* current_root) noexcept {
    if (!(held_ && map_ == current_root)) give_back();
  }

  /// A task with map `root` is about to start on this thread: spares for
  /// another map go back first, so that the values only they keep alive die
  /// outside the task.
  void before_task(const map_node* root) noexcept {
    if (CTXPOOL_UNLIKELY(spare_ != 0) && map_ != root) give_back();
  }

  /// Whether a task's reference to `map`, released as its context is left
  /// and `now_current` becomes current again, is kept as a spare: on a
  /// worker back between its tasks.
  [[nodiscard]] bool keeps_task_reference(const map_node* map,
                                          const context_box* now_current) const noexcept {
    return held_ && now_current == home_ && map != nullptr;
  }
  /// Keeps a finished task's reference to `map` (keeps_task_reference).
  void keep_task_reference(const map_node* map) noexcept {
    if (CTXPOOL_LIKELY(map_ == map && spare_ < max_held)) {
      ++spare_;
      return;
    }
    keep_released(map);
  }

 private:
  friend class worker_capture_reserve;

  void refill(const map_node* map) noexcept;
  void keep_released(const map_node* map) noexcept;
  /// Points the reserve at `map`, giving back the spares it held for another.
  void aim(const map_node* map) noexcept;
  void arm_thread_exit_drain() noexcept;

  const map_node* map_ = nullptr;   // the map the spare references are to
  std::uint32_t spare_ = 0;         // references held for later captures of map_
  std::uint32_t streak_ = 0;        // captures of map_ in epoch streak_epoch_ (held: since aimed)
  std::uint32_t streak_epoch_ = 0;  // the get-cache epoch (state.hpp) the streak counts in
  bool armed_ = false;              // the thread-exit drain is registered
  bool dead_ = false;               // the thread is exiting: no more reserving
  bool held_ = false;               // spares survive leaving a task back to home_
  const context_box* home_ = nullptr;  // the context current between tasks (held only)
};

/// A pool worker's hold on its thread's capture reserve, for the worker's
/// life: while it lives, leaving a task's context back to the worker's own
/// keeps the task's map reference as a spare for the next capture of that
/// map. Made and destroyed on the worker thread; its destructor gives the
/// spares back.
///
/// Invariant: spares keep their map's values alive after the tasks that
/// held them have ended. So while the thread has spares, its pool counts one
/// unit of outstanding work for them (count_spares says when to add it),
/// and the worker gives them back (give_back says when to remove it) before
/// it waits for work: once the pool is idle, the values that only finished
/// tasks held are gone.
class worker_capture_reserve {
 public:
  worker_capture_reserve() noexcept;
  ~worker_capture_reserve();
  worker_capture_reserve(const worker_capture_reserve&) = delete;
  worker_capture_reserve& operator=(const worker_capture_reserve&) = delete;

  /// The spares are now counted as outstanding work; true the first time,
  /// when the caller must add the unit.
  [[nodiscard]] bool count_spares() noexcept { return !std::exchange(counted_, true); }

  /// Gives the spares back; true when they were counted, and the caller
  /// must remove the unit.
  [[nodiscard]] bool give_back() noexcept {
    if (reserve_.has_spares()) reserve_.give_back();
    return std::exchange(counted_, false);
  }

 private:
  capture_reserve& reserve_;
  bool counted_ = false;
};

}  // namespace ctxpool::detail
