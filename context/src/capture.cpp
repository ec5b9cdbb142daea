// The capture reserve's slow paths (detail/capture.hpp): refilling, keeping
// a finished task's reference, giving spares back, and the drain at thread
// exit.
#include <ctxpool/detail/capture.hpp>

#include <atomic>

#include <ctxpool/detail/state.hpp>

namespace ctxpool::detail {

namespace {

/// The most references a capture takes ahead: a refill per this many captures.
constexpr std::uint32_t max_capture_reserve = 63;

/// Spare references are given back at thread exit, after which none are taken.
struct capture_reserve_drain {
  ~capture_reserve_drain() {
    capture_reserve& reserve = tls.reserve;
    reserve.mark_thread_exiting();
  }
};

}  // namespace

void capture_reserve::mark_thread_exiting() noexcept {
  dead_ = true;
  held_ = false;
  if (spare_ != 0) give_back();
}

void capture_reserve::arm_thread_exit_drain() noexcept {
  if (armed_) return;
  armed_ = true;
  static thread_local capture_reserve_drain drain;
  (void)drain;
}

void capture_reserve::aim(const map_node* map) noexcept {
  if (map_ == map) return;
  give_back();
  map_ = map;
  streak_ = 0;
}

void capture_reserve::give_back() noexcept {
  const std::uint32_t spare = std::exchange(spare_, 0);
  if (spare != 0) map_release_many(map_, spare);
}

void capture_reserve::refill(const map_node* map) noexcept {
  aim(map);
  // Reserve only for a thread capturing one map again and again in one epoch
  // (a producer's loop): a task capturing once or twice before its context
  // ends would only give the spare references back. A worker's spares
  // outlive its tasks' contexts, so its streak runs across them.
  if (!held_ && streak_epoch_ != current_epoch()) {
    streak_epoch_ = current_epoch();
    streak_ = 0;
  }
  if (streak_ < max_capture_reserve) ++streak_;
  std::uint32_t extra = streak_ > 2 ? streak_ : 0;
  if (extra != 0 && dead_) extra = 0;
  if (extra != 0) arm_thread_exit_drain();
  map->refs.fetch_add(1 + extra, std::memory_order_relaxed);
  spare_ = extra;
}

void capture_reserve::keep_released(const map_node* map) noexcept {
  // Held, so the thread is not exiting.
  aim(map);
  if (spare_ >= max_held) {
    // We hold more than we give back, so this cannot free the map.
    constexpr std::uint32_t give_back_count = max_held / 2;
    map->refs.fetch_sub(give_back_count, std::memory_order_release);
    spare_ -= give_back_count;
  }
  ++spare_;
}

worker_capture_reserve::worker_capture_reserve() noexcept : reserve_(tls.reserve) {
  if (reserve_.dead_) return;
  reserve_.arm_thread_exit_drain();
  reserve_.held_ = true;
  reserve_.home_ = tls.current;
}

worker_capture_reserve::~worker_capture_reserve() {
  reserve_.held_ = false;
  reserve_.give_back();
}

}  // namespace ctxpool::detail
