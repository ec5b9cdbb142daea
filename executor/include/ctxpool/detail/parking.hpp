// Idle workers: the ones spinning in search of work and the ones parked.
//
// The protocol that keeps a task from waiting while a worker sleeps is the
// classic store-then-look pair, with seq_cst on both sides:
//   - a submitter publishes its task, then looks for a spinning worker and,
//     failing that, wakes a parked one (wake_one);
//   - a worker going to sleep registers as parked (prepare_park), then looks
//     at the queues once more, and only then waits.
// One of the two sees the other. A woken worker counts as spinning from the
// moment it is chosen, so that a burst of submissions wakes one worker, not
// one per task; the spinner that finds work wakes the next (Go's scheduler
// does the same with its spinning Ms), and so does one whose last look
// before parking finds it (the worker loop's hand_on). A waker writes the
// reason into the chosen worker's word under the lock that chose it, so a
// worker whose cancel_park fails knows it was counted, and a late write
// cannot end a later park.
//
// Parked workers wait on a word of their own with C++20 atomic wait (a futex
// on Linux), chosen newest first: the worker that parked last has the
// warmest cache.
//
// @par Thread safety
// Every member may be called from any thread, except that `park` and
// `cancel_park` are called by the worker `index` itself.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <ctxpool/detail/config.hpp>
#include <ctxpool/detail/interleave.hpp>

namespace ctxpool::detail {

class idle_workers {
 public:
  explicit idle_workers(std::size_t workers)
      : words_(new parking_word[workers]),
        max_pausing_(static_cast<std::uint32_t>(workers > 2 ? workers / 2 : 1)) {
    parked_.reserve(workers);
  }
  idle_workers(const idle_workers&) = delete;
  idle_workers& operator=(const idle_workers&) = delete;

  // ---- spinning ------------------------------------------------------------

  /// Counts the caller as spinning: it will look for work again before it
  /// sleeps, so submitters need not wake anyone.
  void start_spinning() noexcept {
    spinning_.fetch_add(1, std::memory_order_seq_cst);
    CTXPOOL_PROTOCOL_STEP();
  }
  /// Ends the caller's spinning; true when it was the last spinner.
  bool stop_spinning() noexcept {
    CTXPOOL_PROTOCOL_STEP();
    const std::uint32_t before = spinning_.fetch_sub(1, std::memory_order_seq_cst);
    CTXPOOL_DEBUG_ASSERT(before != 0, "a worker stopped spinning that was not counted");
    return before == 1;
  }
  /// Whether a spinner may busy-wait (without yielding its core). Half the
  /// workers may at a time, at least one: more would keep a submitter that
  /// wakes from its own wait (for a future, a latch) off the cores of a
  /// machine with no more cores than workers. The others go to sleep.
  bool try_start_pausing() noexcept {
    std::uint32_t n = pausing_.load(std::memory_order_relaxed);
    while (n < max_pausing_) {
      if (pausing_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) return true;
    }
    return false;
  }
  void stop_pausing() noexcept { pausing_.fetch_sub(1, std::memory_order_relaxed); }
  [[nodiscard]] bool anyone_spinning() const noexcept {
    return spinning_.load(std::memory_order_seq_cst) != 0;
  }

  // ---- parking ---------------------------------------------------------------

  /// Registers worker `index` as parked. The caller then looks for work once
  /// more and either calls cancel_park (found some) or park.
  void prepare_park(std::size_t index) {
    {
      std::lock_guard lock(mutex_);
      words_[index].woken.store(0, std::memory_order_relaxed);
      parked_.push_back(static_cast<std::uint32_t>(index));
      parked_count_.store(static_cast<std::uint32_t>(parked_.size()), std::memory_order_seq_cst);
    }
    CTXPOOL_PROTOCOL_STEP();  // between announcing and the caller's last look
  }

  /// Withdraws a registration. False if a waker chose the worker meanwhile:
  /// it is then awake and counted as spinning, as after park.
  bool cancel_park(std::size_t index) noexcept {
    std::lock_guard lock(mutex_);
    for (auto it = parked_.begin(); it != parked_.end(); ++it) {
      if (*it == index) {
        parked_.erase(it);
        parked_count_.store(static_cast<std::uint32_t>(parked_.size()), std::memory_order_seq_cst);
        return true;
      }
    }
    return false;
  }

  /// Sleeps until wake_one chooses this worker or wake_all runs. On return
  /// the worker counts as spinning (unless woken by wake_all).
  void park(std::size_t index) noexcept {
    std::atomic<std::uint32_t>& woken = words_[index].woken;
    while (woken.load(std::memory_order_acquire) == 0) woken.wait(0, std::memory_order_acquire);
  }

  /// Why wake_one woke a worker.
  enum class reason : std::uint32_t {
    look_for_work = 1,  ///< work was published: search for it
    take_io_role = 3,   ///< the I/O waiter role is free: look once, then take it
  };

  /// Wakes the most recently parked worker, counting it as spinning. False
  /// when none is parked.
  bool wake_one(reason why = reason::look_for_work) noexcept {
    CTXPOOL_PROTOCOL_STEP();  // between the caller's publish and this look
    if (parked_count_.load(std::memory_order_seq_cst) == 0) return false;
    std::atomic<std::uint32_t>* woken = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (parked_.empty()) return false;
      const std::uint32_t index = parked_.back();
      parked_.pop_back();
      parked_count_.store(static_cast<std::uint32_t>(parked_.size()), std::memory_order_seq_cst);
      spinning_.fetch_add(1, std::memory_order_seq_cst);
      // The reason is written with the choice, under the lock: written
      // after it, it could land once the worker had withdrawn (cancel_park
      // failing), run and registered again, and end that registration's
      // park while the worker stayed listed and uncounted (the spinning
      // count then went below zero, and submitters woke no one).
      woken = &words_[index].woken;
      woken->store(static_cast<std::uint32_t>(why), std::memory_order_release);
    }
    CTXPOOL_PROTOCOL_STEP();  // chosen, counted as spinning, not yet notified
    // A notification that arrives late only makes a later park look again.
    woken->notify_one();
    return true;
  }

  /// Wakes every parked worker (the pool is ending); they do not count as
  /// spinning.
  void wake_all() noexcept {
    std::lock_guard lock(mutex_);
    for (std::uint32_t index : parked_) {
      words_[index].woken.store(2, std::memory_order_release);
      words_[index].woken.notify_one();
    }
    parked_.clear();
    parked_count_.store(0, std::memory_order_seq_cst);
  }

  /// Whether wake_all (rather than wake_one) woke worker `index`.
  [[nodiscard]] bool woken_by_wake_all(std::size_t index) const noexcept {
    return words_[index].woken.load(std::memory_order_acquire) == 2;
  }
  /// Whether wake_one woke worker `index` to take the I/O waiter role.
  [[nodiscard]] bool woken_for_io_role(std::size_t index) const noexcept {
    return words_[index].woken.load(std::memory_order_acquire) ==
           static_cast<std::uint32_t>(reason::take_io_role);
  }

 private:
  struct alignas(64) parking_word {
    std::atomic<std::uint32_t> woken{0};  // 0 parked, 2 woken to end, else a reason
  };

  std::unique_ptr<parking_word[]> words_;
  std::uint32_t max_pausing_;
  alignas(64) std::atomic<std::uint32_t> spinning_{0};
  std::atomic<std::uint32_t> pausing_{0};  // spinners busy-waiting (a subset)
  alignas(64) std::atomic<std::uint32_t> parked_count_{0};
  std::mutex mutex_;
  std::vector<std::uint32_t> parked_;  // guarded by mutex_; the last parked at the back
};

}  // namespace ctxpool::detail
