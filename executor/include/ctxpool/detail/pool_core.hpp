// The shared state of one thread_pool: the composition of its task nodes
// (task_node.hpp), queues (work_queue.hpp), idle workers (parking.hpp), the
// worker loop (src/pool_core.cpp) and the lifecycle (src/pool_lifecycle.cpp).
//
// Everything a task goes through on a worker (context, slot wipe, observers,
// stats, exception routing) lives here so that `submit`, `post` and the Asio
// executor's `execute` run tasks in exactly the same way.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/detail/scheduler.hpp>
#include <boost/asio/execution_context.hpp>

#include <ctxpool/context.hpp>
#include <ctxpool/detail/config.hpp>
#include <ctxpool/detail/interleave.hpp>
#include <ctxpool/detail/parking.hpp>
#include <ctxpool/detail/small_alloc.hpp>
#include <ctxpool/detail/task_node.hpp>
#include <ctxpool/detail/work_count.hpp>
#include <ctxpool/detail/work_queue.hpp>
#include <ctxpool/hooks.hpp>
#include <ctxpool/thread_local.hpp>

namespace ctxpool {

/// Receives the exception of a task started with `post` (or of an Asio handler
/// run on the pool), with the task's identity and submit site.
using exception_handler = std::function<void(std::exception_ptr, const task_info&)>;

namespace detail {

/// Test- and benchmark-only switches that price the pool's per-task work.
/// Production code never sets them: a pool without propagation and wipe is an
/// ordinary pool with all the residue bugs ctxpool exists to prevent.
struct pool_tuning {
  bool propagate_context = true;  ///< capture at submit, enter a fresh context on the worker
  bool wipe_slots = true;         ///< task_slot_scope around each task
};

class pool_core;

/// Which pool, if any, owns the calling thread, and the thread's index in it.
struct worker_identity {
  const pool_core* pool;
  std::size_t index;
};
inline constinit thread_local worker_identity current_worker{nullptr, 0};

/// Counters written by one worker only, so they need no read-modify-write.
struct worker_counters {
  std::atomic<std::uint64_t> started{0};
  std::atomic<std::uint64_t> completed{0};
};

/// Freed task blocks on their way back to submitters: one freed block holds
/// the addresses of others of its size class.
///
/// A block a worker freed sits in that worker's cache. Were the blocks linked
/// through themselves, the submitter would read each one's link (a transfer
/// from the worker's core) before writing its next task there (a second
/// one); with the addresses gathered in one block, it reads one line for
/// several blocks and the others only move once, when it writes them.
struct block_magazine {
  block_magazine* next;  // the next magazine of a list
  std::size_t count;     // addresses held, after this header
  [[nodiscard]] void** slots() noexcept { return reinterpret_cast<void**>(this + 1); }
  /// How many addresses a block of `block_size` bytes holds besides its header.
  [[nodiscard]] static constexpr std::size_t capacity(std::size_t block_size) noexcept {
    return (block_size - sizeof(block_magazine)) / sizeof(void*);
  }
};
static_assert(sizeof(block_magazine) <= 16, "the smallest small_alloc block must hold a magazine");

/// Task blocks a worker freed, gathered into magazines and handed back to
/// submitters a batch at a time, so that workers do not contend on the
/// shared stack for every task.
struct freed_blocks {
  block_magazine* filling = nullptr;  // the magazine taking addresses now
  block_magazine* full = nullptr;     // full magazines, a list
  block_magazine* full_tail = nullptr;
  std::uint32_t full_count = 0;
};

/// What one worker owns: its deque and inbox, its counters, its freed
/// blocks, and how many tasks it has looked for (for the fairness checks).
/// Padded so that workers share no line.
struct alignas(64) worker_state {
  local_deque deque;
  batch_inbox inbox;
  worker_counters counters;
  std::uint32_t taken = 0;                      // the owner's only
  freed_blocks freed[small_alloc_classes] = {};  // the owner's only
  // The owner keeps spare references to its last tasks' map and counts one
  // unit of tracked work for them (see pool_core::remove_finished_task).
  bool holds_references = false;  // the owner's only
  // The owner holds the I/O waiter role from inside the scheduler's run_one
  // (see the wake-up invariant in pool_core).
  bool waits_in_scheduler = false;  // the owner's only
  // The owner ended a task while a thread waited in wait(): it looks whether
  // the pool is idle once it runs out of work (pool_core::remove_outstanding).
  bool idle_check_due = false;  // the owner's only
};

[[noreturn]] void throw_pool_closed(const char* operation);
[[noreturn]] void throw_called_from_worker(const char* operation);
/// The pool's threads for a requested count: 0 means one per hardware
/// thread; more than thread_pool::max_threads throws invalid_argument.
std::size_t resolve_thread_count(std::size_t requested);

class pool_core {
 public:
  /// `owner` is the thread_pool (an Asio execution context) that hosts the
  /// pool's Asio scheduler, timers and sockets.
  pool_core(boost::asio::execution_context& owner, std::size_t threads, std::string name_prefix,
            std::vector<task_observer*> observers, pool_tuning tuning);
  ~pool_core();
  pool_core(const pool_core&) = delete;
  pool_core& operator=(const pool_core&) = delete;

  // ---- submission (any thread) --------------------------------------------

  /// Queues `f` as a task that runs in a fresh context holding `snapshot`
  /// (continuing its identity when `continuation`). `check_open`: submit/post
  /// refuse a closed pool; Asio's execute never throws (Asio calls it from
  /// destructors) and leaves the task queued, to be destroyed with the pool,
  /// as an io_context does with a stopped queue.
  template <class F>
  void enqueue(F&& f, captured_context snapshot, bool continuation, const task_info& info,
               bool check_open) {
    if (CTXPOOL_UNLIKELY(observed_)) {
      if (continuation) {
        enqueue_node<observed_task_header<true>>(std::forward<F>(f), std::move(snapshot), info,
                                                 check_open);
      } else {
        enqueue_node<observed_task_header<false>>(std::forward<F>(f), std::move(snapshot), info,
                                                  check_open);
      }
    } else if (continuation) {
      enqueue_node<continuation_task_header>(std::forward<F>(f), std::move(snapshot), info,
                                             check_open);
    } else {
      enqueue_node<fresh_task_header>(std::forward<F>(f), std::move(snapshot), info, check_open);
    }
  }

  /// Runs `f` now on this worker as a nested task (Asio's dispatch from a
  /// pool thread).
  template <class F>
  void run_inline(F&& f, captured_context snapshot, bool continuation,
                  const task_info& info) noexcept;

  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return current_worker.pool == this;
  }

  /// A task id for diagnostics, 0 when detection is off.
  [[nodiscard]] std::uint64_t next_task_id() const noexcept;

  [[nodiscard]] bool propagates() const noexcept { return tuning_.propagate_context; }

  // ---- task blocks ----------------------------------------------------------

  /// Memory for a task node: the calling thread's small_alloc cache, refilled
  /// from the blocks workers recycled. A submitter outside the pool never gets
  /// its blocks back from the workers that free them, so without recycling
  /// every task would pay a malloc/free pair across threads.
  void* allocate_task(std::size_t size);
  /// Returns a task node's memory; from a worker it goes back to submitters.
  void free_task(void* block, std::size_t size) noexcept;

  // ---- outstanding work (queued + running tasks + tracked executors) ------
  //
  // Counted in the calling thread's lane of work_ (work_count.hpp), so a task
  // costs its submitter and its worker no shared read-modify-write.

  void add_tracked() noexcept { work_.add(my_lane(), work_kind::tracked); }
  void remove_tracked() noexcept { remove_outstanding(work_kind::tracked); }
  void remove_work() noexcept { remove_outstanding(work_kind::task); }
  /// Uncounts a task that ran or was abandoned on the calling thread.
  ///
  /// A worker keeps the references its finished tasks held to their map as
  /// spares for the next tasks from that map (capture_reserve in the context
  /// layer). Those spares keep the map's values alive, so until the worker
  /// gives them back (give_back_references) they count as one unit of
  /// tracked work: wait() still returns only once the values that finished
  /// tasks alone held are gone.
  void remove_finished_task() noexcept {
    if (CTXPOOL_UNLIKELY(holds_spare_references())) count_held_references();
    remove_work();
  }

  // ---- lifecycle and introspection (thread_pool forwards here) -------------

  void wait();
  void join();
  /// `shutdown_services` destroys the handlers pending in the owner's
  /// services (timer waits, socket operations); called once, before returning.
  void stop(void (*shutdown_services)(boost::asio::execution_context&));
  /// The destructor's end of life: runs every queued task (and what they
  /// submit), then ends the threads without waiting for tracked work; the
  /// owner then shuts its services down, destroying pending operations.
  void finish();
  /// Destroys, unrun, every queued task and those that Asio handed to the
  /// executor after the workers were told to end.
  void destroy_queued_tasks() noexcept;
  void set_exception_handler(exception_handler handler);
  void report_exception(std::exception_ptr error, const task_info& info) noexcept;

  [[nodiscard]] std::size_t thread_count() const noexcept { return thread_count_; }
  /// The execution context (the thread_pool) hosting timers, sockets and services.
  [[nodiscard]] boost::asio::execution_context& owner() const noexcept { return owner_; }
  struct counts {
    std::size_t queued;
    std::size_t running;
    std::uint64_t completed;
  };
  [[nodiscard]] counts snapshot_counts() const noexcept;

 private:
  template <class F, class Header>
  friend class task_node_impl;

  template <class Header, class F>
  void enqueue_node(F&& f, captured_context&& snapshot, const task_info& info, bool check_open);

  /// Queues a counted node: on the calling worker's own deque for a fresh
  /// task submitted from a worker, else on the injection queue; then makes
  /// sure a worker will look (wake_for_new_work).
  void push(task_node* node, bool fresh) noexcept {
    if (fresh && current_worker.pool == this &&
        workers_[current_worker.index].deque.push(node)) {
      CTXPOOL_PROTOCOL_STEP();  // published, nobody woken yet
      wake_for_new_work();
      return;
    }
    injection_.push(node);
    CTXPOOL_PROTOCOL_STEP();
    wake_for_new_work();
  }
  /// After a task was published: nothing to do if a worker is spinning (it
  /// will find it); else wake a parked worker, else the one sleeping in the
  /// Asio scheduler. Inline, because the common case is one load.
  void wake_for_new_work() noexcept {
    if (idle_.anyone_spinning()) return;
    wake_idle_worker();
  }
  void wake_idle_worker() noexcept;
  void wake_io_waiter() noexcept;

  // The worker loop (src/pool_core.cpp).
  void worker_main(std::size_t index, const std::string& name);
  task_node* find_task(worker_state& me, std::size_t index) noexcept;
  /// The injection queue's oldest task, the next ones moved to our (empty)
  /// inbox, waiting briefly if another worker is taking some; wakes another
  /// worker if more is queued.
  task_node* take_injected(worker_state& me) noexcept;
  /// An outside task: from our inbox, else from the injection queue.
  task_node* take_outside(worker_state& me) noexcept;
  /// A task from another worker's inbox or, unless `inboxes_only`, deque.
  task_node* steal_task(std::size_t thief, bool inboxes_only) noexcept;
  /// Looks for a task, spinning a while if `pause` (and few enough others
  /// spin); `counted`: a waker already counted the caller as spinning.
  task_node* search(worker_state& me, std::size_t index, bool counted, bool pause) noexcept;
  [[nodiscard]] bool work_visible() const noexcept;
  /// Runs one ready Asio handler unless a worker sleeps in the scheduler;
  /// true if it ran one.
  bool poll_scheduler();
  /// Gives up the I/O waiter role the calling worker holds and wakes a
  /// parked worker to take it.
  void release_io_role() noexcept;
  /// Runs ready handlers until none is left (at most a batch); how many ran.
  /// Called by workers (the I/O waiter too, on its way out of run_one).
  std::size_t run_ready_handlers();
  void sleep_in_scheduler();
  /// True when woken to look for work (counted as spinning).
  bool sleep_parked(std::size_t index);

  void count_held_references() noexcept;
  /// Gives the calling worker's spare map references back and uncounts them.
  void give_back_references(worker_state& me) noexcept;

  void start_threads(const std::string& name_prefix);
  void end_threads() noexcept;
  void notify_idle() noexcept;
  /// Blocks until nothing (or, with `tasks_only`, no task) is outstanding,
  /// or the threads have ended (then nothing can change).
  void wait_idle(bool tasks_only);
  /// The work_ lane of the calling thread.
  [[nodiscard]] std::size_t my_lane() const noexcept {
    return work_.lane_for(current_worker.pool == this ? current_worker.index : work_count::npos);
  }
  void remove_outstanding(work_kind kind) noexcept {
    work_.remove(my_lane(), kind);
    // seq_cst pairs with wait_idle(): either the waiter sees the count at zero
    // or we see the waiter and wake it (under the mutex, so no lost wake-up).
    // Of removals racing to the last, the one last in seq_cst order sees all.
    if (CTXPOOL_UNLIKELY(waiters_.load(std::memory_order_seq_cst) != 0)) {
      // Reading every lane costs a line from each worker, and a server whose
      // main thread sits in wait() would pay it for every request. A worker
      // ending a task looks once it runs out of work instead
      // (check_idle_if_due): while it has more, the pool is not idle.
      if (kind == work_kind::task && current_worker.pool == this) {
        workers_[current_worker.index].idle_check_due = true;
      } else if (work_.idle(/*tasks_only=*/true)) {
        notify_idle();
      }
    }
  }
  /// The deferred half of remove_outstanding, on a worker out of work.
  void check_idle_if_due(worker_state& me) noexcept {
    if (CTXPOOL_UNLIKELY(me.idle_check_due)) {
      me.idle_check_due = false;
      if (work_.idle(/*tasks_only=*/true)) notify_idle();
    }
  }

  /// Bumps the outstanding count for a new task, refusing it once the pool is
  /// closed. Increment-then-check (with the same check-after-store in join)
  /// leaves no window in which a task slips past a join that saw zero.
  void add_task(bool check_open) {
    work_.add(my_lane(), work_kind::task);
    if (check_open && CTXPOOL_UNLIKELY(closed_.load(std::memory_order_seq_cst))) {
      remove_work();
      throw_pool_closed("submit/post");
    }
  }

  worker_counters& counters_for_this_thread() noexcept {
    return current_worker.pool == this ? workers_[current_worker.index].counters
                                       : foreign_counters_;
  }

  /// Adds one to a counter of `counters`: a plain load and store for a
  /// worker's own counters (one writer), under a lock for the foreign ones.
  void count(worker_counters& counters, std::atomic<std::uint64_t>& counter) noexcept {
    if (CTXPOOL_UNLIKELY(&counters == &foreign_counters_)) {
      std::lock_guard lock(foreign_mutex_);
      counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    } else {
      counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
  }

  /// Runs `f` inside the task's context and slot scopes, then destroys it
  /// there too (so that destructors writing slots or variables are wiped).
  template <class F>
  void run_task(F& f, captured_context&& snapshot, bool continuation,
                const task_info& info) noexcept;
  void notify_begin(const task_info& info) noexcept;
  void notify_end(const task_info& info) noexcept;

  // Read-only after construction.
  boost::asio::execution_context& owner_;
  std::size_t thread_count_;
  pool_tuning tuning_;
  bool diagnostics_;
  std::vector<task_observer*> observers_;
  bool observed_;  // observers_ is not empty: tasks keep their whole task_info
  std::unique_ptr<worker_state[]> workers_;

  worker_counters foreign_counters_;  // tasks run on a thread that is not a worker
  std::mutex foreign_mutex_;          // the foreign counters may have many writers

  work_count work_;
  // Read by every submit and every finished task, written rarely: a line of
  // their own.
  alignas(64) std::atomic<int> waiters_{0};
  std::atomic<bool> closed_{false};  // no new submit/post; see add_task
  std::mutex idle_mutex_;
  std::condition_variable idle_cv_;
  bool threads_gone_ = false;  // guarded by idle_mutex_: wait() has nothing to wait for

  std::mutex handler_mutex_;
  std::shared_ptr<const exception_handler> handler_;  // null: the default report

  std::mutex lifecycle_mutex_;  // serialises join/stop; guards the members below
  bool threads_ended_ = false;
  bool handlers_destroyed_ = false;
  std::vector<std::thread> threads_;

  injection_queue injection_;
  idle_workers idle_;
  alignas(64) std::atomic<bool> stopping_{false};  // workers exit instead of taking the next task
  // Tasks Asio's execute handed over once stopping_ was set: uncounted, linked
  // through `next`, destroyed by destroy_queued_tasks.
  std::atomic<task_node*> abandoned_{nullptr};
  void keep_abandoned(task_node* node) noexcept;

  // ---- the wake-up invariant -------------------------------------------------
  //
  // Whenever a task or handler is ready to run, some worker is awake and will
  // look for it, or will be woken to run it, without waiting for any other
  // event. An idle worker sleeps in one of two ways: one at a time (the I/O
  // waiter, holding io_waiter_taken_) in the Asio scheduler's run_one(), where
  // the reactor, timers and handlers posted to the scheduler wake it; the
  // others parked on a futex (idle_, whose store-then-look protocol is in
  // parking.hpp). A worker parks only while the I/O role is held, so the
  // scheduler is never left without a waiter while every worker sleeps.
  // Every way work arrives, and who runs it:
  //  1. submit/post/execute from outside the pool, or a deque that overflowed:
  //     the injection queue, then wake_for_new_work: a spinner looks again
  //     before it sleeps; else a parked worker is woken; else the I/O waiter,
  //     through wake_op_ (one in flight; whoever runs it while the waiter
  //     still sleeps sends it again). Sleepers announce themselves (parked,
  //     io_sleepers_) before their last look, submitters publish before
  //     looking for them, both seq_cst: one of the two sees the other.
  //  2. submit/post from a worker: its own deque, then the same wake-up.
  //  3. a worker that takes one task and sees more (a batch from the
  //     injection queue, the last spinner finding work): it wakes another, so
  //     the rest does not wait for it (take_injected, search).
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
  alignas(64) std::atomic<int> io_sleepers_{0};
  std::atomic<std::size_t> io_sleeper_index_{0};  // which worker, while io_sleepers_ != 0
  std::atomic<bool> io_waiter_taken_{false};
  std::atomic<bool> wake_pending_{false};  // a wake-up handler is queued and not yet run

  // Recycled task blocks, one stack of magazines per small_alloc size class.
  // Workers push batches; a submitter takes a whole stack with one exchange,
  // so there is no ABA problem, and keeps it as its own (see allocate_task).
  alignas(64) std::atomic<block_magazine*> recycled_[small_alloc_classes] = {};
  void drain_recycled() noexcept;
  /// Hands a worker's freed blocks to the shared stacks (when a batch is
  /// full, before it sleeps, and when it ends).
  void flush_freed(worker_state& me, std::size_t size_class) noexcept;
  void flush_all_freed(worker_state& me) noexcept;

  // Asio's scheduler, a service of owner_ (as in asio::thread_pool): timers
  // and sockets made from the pool queue their completions here, and the
  // workers run it. It lives as long as owner_, which outlives this core.
  boost::asio::detail::scheduler& scheduler_;
  bool scheduler_work_ = true;  // the scheduler counts one work item until end_threads

  /// The no-op that wake_io_waiter() queues in the scheduler. One suffices
  /// (wake_pending_ keeps it queued at most once), so it lives here and a
  /// wake-up allocates nothing.
  class wake_operation : public boost::asio::detail::scheduler_operation {
   public:
    explicit wake_operation(pool_core& pool) noexcept
        : scheduler_operation(&do_complete), pool_(pool) {}

   private:
    static void do_complete(void* owner, scheduler_operation* base,
                            const boost::system::error_code&, std::size_t) noexcept {
      // Called with a null owner when the scheduler destroys it on shutdown.
      if (owner == nullptr) return;
      pool_core& pool = static_cast<wake_operation*>(base)->pool_;
      pool.wake_pending_.store(false, std::memory_order_seq_cst);
      CTXPOOL_PROTOCOL_STEP();
      // A busy worker's poll_one can take the wake-up meant for the sleeper
      // (it looked for a sleeper just before one registered): then the
      // sleeper is still asleep with work queued. Send it again.
      if (pool.io_sleepers_.load(std::memory_order_seq_cst) != 0 &&
          !(current_worker.pool == &pool &&
            current_worker.index == pool.io_sleeper_index_.load(std::memory_order_relaxed))) {
        pool.wake_io_waiter();
      }
    }
    pool_core& pool_;
  };
  wake_operation wake_op_{*this};
};

template <class F, class Header>
void task_node_impl<F, Header>::do_complete(task_node* base, pool_core& pool, bool run) noexcept {
  auto* self = static_cast<task_node_impl*>(base);
  if (run) {
    // The task's context consumes the snapshot and drops it before the work
    // count: once wait() returns, values held only by finished tasks are gone.
    pool.run_task(self->f_, self->header_.take_context(), Header::continuation,
                  self->header_.info());
  } else {
    std::destroy_at(std::addressof(self->f_));
    (void)self->header_.take_context();
  }
  self->~task_node_impl();
  pool.free_task(self, sizeof(task_node_impl));  // before remove_work: the pool may go then
  pool.remove_finished_task();
}

template <class F>
void pool_core::run_task(F& f, captured_context&& snapshot, bool continuation,
                         const task_info& info) noexcept {
  worker_counters& counters = counters_for_this_thread();
  count(counters, counters.started);
  {
    std::optional<fresh_context_scope> context_scope;
    if (CTXPOOL_LIKELY(tuning_.propagate_context)) {
      context_scope.emplace(std::move(snapshot), continuation);
    }
    {
      std::optional<task_slot_scope> slots;
      if (CTXPOOL_LIKELY(tuning_.wipe_slots)) slots.emplace();
      if (observed_) notify_begin(info);
      try {
        f();
      } catch (...) {
        report_exception(std::current_exception(), info);
      }
      std::destroy_at(std::addressof(f));
    }
    if (observed_) notify_end(info);
  }
  count(counters, counters.completed);
}

template <class Header, class F>
void pool_core::enqueue_node(F&& f, captured_context&& snapshot, const task_info& info,
                             bool check_open) {
  using node_type = task_node_impl<std::decay_t<F>, Header>;
  void* block = allocate_task(sizeof(node_type));
  // Asio's execute after the workers were told to end: nothing will run the
  // task, so it is kept aside, uncounted, to be destroyed by stop() or with
  // the pool. Counting it would let a thread that keeps posting keep stop()
  // waiting for the count to reach zero.
  const bool abandoned = !check_open && stopping_.load(std::memory_order_acquire);
  if (!abandoned) {
    try {
      add_task(check_open);
    } catch (...) {
      free_task(block, sizeof(node_type));
      throw;
    }
  }
  node_type* node = nullptr;
  try {
    node = new (block) node_type(std::forward<F>(f), std::move(snapshot), info);
  } catch (...) {
    free_task(block, sizeof(node_type));
    if (!abandoned) remove_work();
    throw;
  }
  if (CTXPOOL_UNLIKELY(abandoned)) {
    keep_abandoned(node);
    return;
  }
  push(node, !Header::continuation);
}

template <class F>
void pool_core::run_inline(F&& f, captured_context snapshot, bool continuation,
                           const task_info& info) noexcept {
  // A handler that the I/O waiter is about to run from inside run_one: the
  // role goes to a parked worker first, so that the other ready handlers and
  // the reactor do not wait for this one.
  if (CTXPOOL_UNLIKELY(current_worker.pool == this &&
                       workers_[current_worker.index].waits_in_scheduler)) {
    release_io_role();
  }
  work_.add(my_lane(), work_kind::task);
  union holder {
    explicit holder(F&& g) : f(std::forward<F>(g)) {}
    ~holder() {}  // run_task destroys f
    std::decay_t<F> f;
  } local(std::forward<F>(f));
  run_task(local.f, std::move(snapshot), continuation, info);
  remove_finished_task();
}

}  // namespace detail
}  // namespace ctxpool
