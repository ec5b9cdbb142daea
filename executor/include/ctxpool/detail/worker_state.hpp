// What each worker of a pool owns: the part other threads touch (its queues
// and counters) kept apart from the part only the worker itself touches, as
// oneTBB separates an arena slot's shared and private state.
//
// @par Thread safety
// `worker_shared`: as its members say (work_queue.hpp; the counters have one
// writer, the worker, and are read by stats()). `worker_private`: the owning
// worker only, so plain members; pool_core checks the owner with
// CTXPOOL_DEBUG_ASSERT where it reaches them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <ctxpool/detail/capture.hpp>
#include <ctxpool/detail/config.hpp>
#include <ctxpool/detail/task_blocks.hpp>
#include <ctxpool/detail/work_queue.hpp>

namespace ctxpool::detail {

class pool_core;

/// Which pool, if any, owns the calling thread, and the thread's index in it.
struct worker_identity {
  const pool_core* pool;
  std::size_t index;
};
inline constinit thread_local worker_identity current_worker{nullptr, 0};

/// `current_worker`, for header code: a coroutine that submits after it
/// resumed on another thread must not push to the first thread's deque (see
/// CTXPOOL_TLS_ACCESSOR).
CTXPOOL_TLS_ACCESSOR worker_identity& this_thread_worker() noexcept {
  CTXPOOL_TLS_FENCE();
  return current_worker;
}

/// Counters written by one thread only (a worker), so they need no
/// read-modify-write; read by any thread.
struct worker_counters {
  std::atomic<std::uint64_t> started{0};
  std::atomic<std::uint64_t> completed{0};
};

/// The part of a worker that other workers and threads reach.
struct worker_shared {
  local_deque deque;  // pushed and popped by the worker, stolen by others
  batch_inbox inbox;  // filled by the worker, taken by anyone
  worker_counters counters;
};

/// The part of a worker that only the worker itself reads and writes.
struct worker_private {
  /// Tasks looked for, for the fairness checks (see fairness_interval).
  std::uint32_t taken = 0;
  /// Blocks freed here, on their way back to submitters.
  freed_task_blocks freed;
  /// The worker's hold on its capture reserve, while its loop runs
  /// (pool_core::worker_main); null before and after.
  worker_capture_reserve* reserve = nullptr;
  /// The worker holds the I/O waiter role from inside the scheduler's
  /// run_one (see io_waiter.hpp).
  bool waits_in_scheduler = false;
  /// The worker ended a task while a thread waited in wait(): it looks
  /// whether the pool is idle once it runs out of work
  /// (pool_core::remove_outstanding).
  bool idle_check_due = false;
};

/// One worker. Padded so that workers share no line; the shared part comes
/// first, where thieves look.
struct alignas(64) worker_state {
  worker_shared shared;
  worker_private own;
};

}  // namespace ctxpool::detail
