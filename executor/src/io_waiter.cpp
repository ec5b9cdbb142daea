// The I/O waiter role (described with the wake-up invariant in
// detail/io_waiter.hpp): taking it into the scheduler, handing it on, waking
// its holder, and the handlers workers run between tasks.
#include <ctxpool/detail/pool_core.hpp>

#include <boost/asio/detail/scheduler.hpp>

namespace ctxpool::detail {

namespace {

/// How many ready handlers a worker runs in a row before it looks at its
/// tasks again (see run_ready_handlers).
constexpr std::size_t handler_batch = 16;

}  // namespace

bool pool_core::poll_scheduler() {
  // While a worker sleeps in the scheduler, what reaches the scheduler's
  // queue from outside it wakes that worker (Asio interrupts the reactor or
  // signals its wait); what a handler queues from inside is drained by the
  // thread that ran the handler (run_ready_handlers). So a worker that has
  // run no handler since it last found the queue empty has nothing to take
  // here, and polling could take the no-op meant to wake the sleeper for a
  // task (it posts itself again if that happens anyway).
  if (io_.sleepers.load(std::memory_order_relaxed) != 0) return false;
  return run_ready_handlers() != 0;
}

std::size_t pool_core::run_ready_handlers() {
  // A handler run by poll_one or run_one queues the completions of the
  // operations it starts as continuations that finish at once (the next
  // read of a composed async_read that finds the bytes already there) in the
  // calling thread's private queue, and Asio moves them to the shared queue after
  // the handler *without waking anyone*: Asio expects the thread to stay in
  // its run loop. Ours leaves it after one handler, and a worker sleeping in
  // the reactor meanwhile would not see them. So the thread that ran a
  // handler looks again until the queue has nothing ready, and past a batch
  // hands what may be left to the sleeper.
  boost::system::error_code ignored;
  std::size_t ran = 0;
  while (scheduler_.poll_one(ignored) != 0) {
    CTXPOOL_PROTOCOL_STEP();  // the handler's continuations are published, unannounced
    if (++ran == handler_batch) {
      // The rest waits for no other event: the waiter takes it; the waiter
      // itself, about to leave, hands the role to a parked worker, whose
      // run_one starts with it; with no waiter, the next worker to go idle
      // or take the role looks, and we at our next poll.
      // (Whether we still hold the role is read now: a handler we ran may
      // have handed it on, and the new waiter may be asleep in the reactor.)
      if (!workers_[current_worker.index].own.waits_in_scheduler &&
          io_.sleepers.load(std::memory_order_seq_cst) != 0) {
        wake_io_waiter();
      }
      break;
    }
  }
  return ran;
}

void pool_core::wake_io_waiter() noexcept {
  // One wake-up in flight at a time; the worker it wakes passes it on.
  if (io_.wake_pending.load(std::memory_order_relaxed) ||
      io_.wake_pending.exchange(true, std::memory_order_acq_rel)) {
    return;
  }
  CTXPOOL_PROTOCOL_STEP();
  scheduler_.post_immediate_completion(&io_.wake_op, /*is_continuation=*/false);
}

void pool_core::sleep_in_scheduler() {
  worker_state& me = workers_[current_worker.index];
  CTXPOOL_DEBUG_ASSERT(current_worker.pool == this && !me.own.waits_in_scheduler,
                       "the I/O role is taken by a worker of this pool that does not hold it");
  // Announce ourselves before the last look at the queues: a submitter
  // publishes its task, then looks at io_.sleepers (both seq_cst).
  io_.sleeper_index.store(current_worker.index, std::memory_order_relaxed);
  io_.sleepers.fetch_add(1, std::memory_order_seq_cst);
  me.own.waits_in_scheduler = true;
  CTXPOOL_PROTOCOL_STEP();  // announced, before the last look
  struct leave_scheduler {
    pool_core& pool;
    worker_state& me;
    ~leave_scheduler() {  // also when a raw handler throws out of run_one
      if (me.own.waits_in_scheduler) pool.release_io_role();
    }
  } leave{*this, me};
  boost::system::error_code ignored;
  if (!work_visible() && !stopping(std::memory_order_seq_cst) &&
      (CTXPOOL_PROTOCOL_STEP(), scheduler_.run_one(ignored) != 0)) {
    // Leaving the scheduler: what the handler queued is ours to run first
    // (run_ready_handlers says why). A handler run through the pool's
    // executor handed the role on before it started (run_inline).
    run_ready_handlers();
  }
}

void pool_core::release_io_role() noexcept {
  CTXPOOL_DEBUG_ASSERT(current_worker.pool == this &&
                           workers_[current_worker.index].own.waits_in_scheduler &&
                           io_.taken.load(std::memory_order_relaxed),
                       "the I/O role is released by its holder");
  workers_[current_worker.index].own.waits_in_scheduler = false;
  io_.sleepers.fetch_sub(1, std::memory_order_seq_cst);
  CTXPOOL_PROTOCOL_STEP();
  io_.taken.store(false, std::memory_order_seq_cst);
  CTXPOOL_PROTOCOL_STEP();  // the role is free, nobody woken to take it yet
  // A parked worker takes the role over (it looks for tasks once, then takes
  // the free role), so that timers and I/O never wait for a busy worker.
  idle_.wake_one(idle_workers::reason::take_io_role);
}

void wake_operation::do_complete(void* owner, scheduler_operation* base,
                                 const boost::system::error_code&, std::size_t) noexcept {
  // Called with a null owner when the scheduler destroys it on shutdown.
  if (owner == nullptr) return;
  pool_core& pool = static_cast<wake_operation*>(base)->pool_;
  pool.io_.wake_pending.store(false, std::memory_order_seq_cst);
  CTXPOOL_PROTOCOL_STEP();
  // A busy worker's poll_one can take the wake-up meant for the sleeper
  // (it looked for a sleeper just before one registered): then the
  // sleeper is still asleep with work queued. Send it again.
  if (pool.io_.sleepers.load(std::memory_order_seq_cst) != 0 &&
      !(current_worker.pool == &pool &&
        current_worker.index == pool.io_.sleeper_index.load(std::memory_order_relaxed))) {
    pool.wake_io_waiter();
  }
}

}  // namespace ctxpool::detail
