// The Asio I/O-waiter role and the pool's wake-up invariant, written up once.
//
// ---- the wake-up invariant --------------------------------------------------
//
// Whenever a task or handler is ready to run, some worker is awake and will
// look for it, or will be woken to run it, without waiting for any other
// event. An idle worker sleeps in one of two ways: one at a time (the I/O
// waiter, holding the role) in the Asio scheduler's run_one(), where the
// reactor, timers and handlers posted to the scheduler wake it; the others
// parked on a futex (idle_workers, whose store-then-look protocol is in
// parking.hpp). A worker parks only while the I/O role is held, so the
// scheduler is never left without a waiter while every worker sleeps.
//
// ---- the role ---------------------------------------------------------------
//
// Who holds it: the worker that, out of work, wins `taken` (an exchange in
// the worker loop). It announces itself (`sleepers`, `sleeper_index`,
// worker_private::waits_in_scheduler) before its last look at the queues,
// then sleeps in run_one (pool_core::sleep_in_scheduler).
// When it is handed on (pool_core::release_io_role): before the holder runs
// a handler through the pool's executor (run_inline), when run_one returns,
// and when a raw handler throws out of run_one. The holder frees `taken`
// and wakes a parked worker for the reason take_io_role; that worker looks
// for tasks once and goes straight to the free role. A parked worker's last
// look counts a free role as work, so the role never stays free while every
// worker sleeps.
// How a waiter that sleeps is woken for a task: `wake_op` posted to the
// scheduler, at most one in flight (`wake_pending`); whoever runs it while
// the waiter still sleeps (a busy worker's poll) posts it again.
//
// Every way work arrives, and who runs it:
//  1. submit/post/execute from outside the pool, or a deque that overflowed:
//     the injection queue, then wake_for_new_work: a spinner looks again
//     before it sleeps; else a parked worker is woken; else the I/O waiter,
//     through the wake operation (one in flight; whoever runs it while the
//     waiter still sleeps sends it again). Sleepers announce themselves
//     (parked, `sleepers`) before their last look, submitters publish before
//     looking for them, both seq_cst: one of the two sees the other.
//  2. submit/post from a worker: its own deque, then the same wake-up.
//  3. a worker that takes one task and sees more (a batch from the
//     injection queue, the last spinner finding work, a worker whose last
//     look before parking found work): it wakes another, so the rest does
//     not wait for it (take_injected, search, run_worker_loop's hand_on).
//     A submitter that saw a spinner woke no one, counting on the spinner;
//     each of these is a spinner's last chance to pass that on.
//  4. a handler posted to the scheduler from outside it (a completion
//     dispatched from a foreign thread lands in 1; Asio's own posts, timers
//     and reactor events here): Asio wakes the thread waiting in it (signal
//     or reactor interrupt). If none waits, the role is held by a worker on
//     its way into run_one (it sees the queue there), or it is free and
//     some awake worker takes it before it can park; busy workers also poll
//     every io_poll_interval tasks.
//  5. completions a handler causes while it runs inside run_one/poll_one
//     (a speculative read that finds the next bytes already there): Asio
//     queues them privately and publishes them after the handler without
//     waking anyone. The thread that ran the handler drains the scheduler
//     before anything else (run_ready_handlers), past a batch handing the
//     rest to the waiter.
//  6. the I/O waiter leaving run_one: before it runs a handler through the
//     pool's executor (run_inline), or else when run_one returns, it frees
//     the role and wakes a parked worker to take it, so that the other
//     ready handlers, timers and I/O never wait for a busy worker; then it
//     drains what its handler queued, as in 5.
//
// @par Thread safety
// Every member is atomic; the orderings are stated where each is used
// (src/io_waiter.cpp, src/worker_loop.cpp).
#pragma once

#include <atomic>
#include <cstddef>

#include <boost/asio/detail/scheduler_operation.hpp>

namespace ctxpool::detail {

class pool_core;

/// The no-op that pool_core::wake_io_waiter() queues in the scheduler. One
/// suffices (wake_pending keeps it queued at most once), so it lives in the
/// role and a wake-up allocates nothing.
class wake_operation : public boost::asio::detail::scheduler_operation {
 public:
  explicit wake_operation(pool_core& pool) noexcept
      : scheduler_operation(&do_complete), pool_(pool) {}

 private:
  static void do_complete(void* owner, scheduler_operation* base, const boost::system::error_code&,
                          std::size_t) noexcept;
  pool_core& pool_;
};

/// The state of the I/O waiter role (see the header comment).
struct io_waiter_role {
  explicit io_waiter_role(pool_core& pool) noexcept : wake_op(pool) {}

  /// Workers announced as sleeping in run_one (0 or 1), seq_cst.
  alignas(64) std::atomic<int> sleepers{0};
  /// Which worker, while `sleepers` != 0.
  std::atomic<std::size_t> sleeper_index{0};
  /// A worker holds the role (from its exchange until release_io_role).
  std::atomic<bool> taken{false};
  /// `wake_op` is queued in the scheduler and has not run yet.
  std::atomic<bool> wake_pending{false};
  wake_operation wake_op;
};

}  // namespace ctxpool::detail
