// The pool's count of outstanding work (queued and running tasks, tracked
// executors), kept without a shared read-modify-write per task.
//
// One shared counter costs every task two cache-line transfers: the
// submitter's increment pulls the line from the worker that decremented it
// last, and the worker's decrement pulls it back. Here every thread counts in
// a lane of its own (a worker in its worker's lane, other threads in one of a
// few foreign lanes), and each lane keeps two monotonic counters, what it
// added and what it removed, so a task added in one lane and removed in
// another costs each side a write to a line it already owns.
//
// Reading "nothing outstanding" then takes every lane. All removal counters
// are read first, then all addition counters. A removal happens after its
// addition (a task is queued after it is counted, and run after it is
// dequeued), so the removals read are at most the additions made up to the
// end of the first pass, and the additions read are at least those: equal
// sums mean that at the end of the first pass nothing was outstanding, the
// same guarantee as one counter read at zero.
//
// @par Thread safety
// Every member function may be called from any thread; `lane_for` picks the
// caller's lane. Counts use seq_cst so that they order against the pool's
// closed flag (add, then look at the flag; close, then read the counts) and
// against wait()'s registration (remove, then look for waiters; register,
// then read the counts).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace ctxpool::detail {

/// What is counted: tasks (queued or running) and tracked executors.
enum class work_kind : std::uint8_t { task = 0, tracked = 1 };

/// The foreign lane of the calling thread, chosen once per thread (round
/// robin over all threads that ever submit to a pool from outside).
std::size_t foreign_lane_of_this_thread() noexcept;

class work_count {
 public:
  /// Lanes for threads that are no worker of the pool. Four keep a handful of
  /// outside producers on lines of their own.
  static constexpr std::size_t foreign_lanes = 4;

  explicit work_count(std::size_t workers)
      : workers_(workers), lanes_(new lane[workers + foreign_lanes]) {}

  /// The lane of worker `index`, or of the calling thread when it is not a
  /// worker (`index` == npos).
  static constexpr std::size_t npos = ~std::size_t{0};
  [[nodiscard]] std::size_t lane_for(std::size_t worker_index) const noexcept {
    return worker_index != npos ? worker_index : workers_ + foreign_lane_of_this_thread();
  }

  void add(std::size_t lane_index, work_kind kind) noexcept {
    lanes_[lane_index].added[static_cast<int>(kind)].fetch_add(1, std::memory_order_seq_cst);
  }
  void remove(std::size_t lane_index, work_kind kind) noexcept {
    lanes_[lane_index].removed[static_cast<int>(kind)].fetch_add(1, std::memory_order_seq_cst);
  }

  /// Tasks and tracked executors outstanding, read in one two-pass sweep so
  /// that both are of the same instant: exact when a count reads 0 (see the
  /// file comment), an estimate otherwise.
  struct totals {
    std::uint64_t tasks;
    std::uint64_t tracked;
  };
  [[nodiscard]] totals outstanding() const noexcept {
    std::uint64_t removed[2] = {0, 0};
    for (std::size_t i = 0; i < lane_count(); ++i) {
      for (int k = 0; k < 2; ++k)
        removed[k] += lanes_[i].removed[k].load(std::memory_order_seq_cst);
    }
    std::uint64_t added[2] = {0, 0};
    for (std::size_t i = 0; i < lane_count(); ++i) {
      for (int k = 0; k < 2; ++k) added[k] += lanes_[i].added[k].load(std::memory_order_seq_cst);
    }
    const auto left = [&](int k) { return added[k] > removed[k] ? added[k] - removed[k] : 0; };
    return {left(0), left(1)};
  }
  /// No task outstanding and, unless `tasks_only`, no tracked executor.
  [[nodiscard]] bool idle(bool tasks_only) const noexcept {
    const totals now = outstanding();
    return now.tasks == 0 && (tasks_only || now.tracked == 0);
  }

 private:
  [[nodiscard]] std::size_t lane_count() const noexcept { return workers_ + foreign_lanes; }

  struct alignas(64) lane {
    std::atomic<std::uint64_t> added[2] = {};
    std::atomic<std::uint64_t> removed[2] = {};
  };

  std::size_t workers_;
  std::unique_ptr<lane[]> lanes_;
};

}  // namespace ctxpool::detail
