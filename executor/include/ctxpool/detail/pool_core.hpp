// The shared core of one thread_pool: the composition of its parts, and
// what every task goes through on a worker (context, thread-local wipe,
// observers, stats, exception routing), kept here so that `submit`, `post`
// and the Asio executor's `execute` run tasks in exactly the same way.
//
// The parts: task_node.hpp, work_queue.hpp, worker_state.hpp (a worker's
// shared and private state), parking.hpp (idle workers), io_waiter.hpp (the
// I/O waiter role and the wake-up invariant), task_blocks.hpp, work_count.hpp,
// task_exceptions.hpp. The code: pool_core_impl.hpp (the per-task templates
// and the fork-join hooks), src/worker_loop.cpp, src/io_waiter.cpp,
// src/pool_lifecycle.cpp.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/execution_context.hpp>

#include <ctxpool/detail/capture.hpp>
#include <ctxpool/detail/config.hpp>
#include <ctxpool/detail/interleave.hpp>
#include <ctxpool/detail/io_waiter.hpp>
#include <ctxpool/detail/parking.hpp>
#include <ctxpool/detail/pool_tuning.hpp>
#include <ctxpool/detail/snapshot.hpp>
#include <ctxpool/detail/state.hpp>
#include <ctxpool/detail/task_blocks.hpp>
#include <ctxpool/detail/task_exceptions.hpp>
#include <ctxpool/detail/task_node.hpp>
#include <ctxpool/detail/work_count.hpp>
#include <ctxpool/detail/work_queue.hpp>
#include <ctxpool/detail/worker_state.hpp>
#include <ctxpool/hooks.hpp>
#include <ctxpool/thread_local.hpp>

namespace boost::asio::detail {
class scheduler;  // src/ only: users' translation units need no reactor
}  // namespace boost::asio::detail

namespace ctxpool::detail {

/// Where a pool is in its life. Phases only advance, each implying those
/// before it; join, finish and stop advance them under lifecycle_mutex_.
enum class pool_phase : std::uint8_t {
  running,             ///< accepting tasks
  closed,              ///< submit/post throw pool_closed (join/finish, once idle)
  stopping,            ///< workers exit before their next task; Asio's execute keeps
                       ///< tasks aside, uncounted (stop() comes here at once)
  ended,               ///< the threads are gone: wait() has nothing to wait for
  services_shut_down,  ///< stop() destroyed the handlers pending in the services
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
    return this_thread_worker().pool == this;
  }

  /// A task id for diagnostics, 0 when detection is off.
  [[nodiscard]] std::uint64_t next_task_id() const noexcept;

  [[nodiscard]] bool propagates() const noexcept { return tuning_.propagate_context; }
  /// The snapshot a task submitted now runs in: the calling thread's
  /// current context, or none when the pool is tuned not to propagate.
  [[nodiscard]] captured_context capture() const noexcept {
    return tuning_.propagate_context ? captured_context::capture() : captured_context{};
  }

  // ---- fork-join children (task_group.cpp) ----------------------------------
  //
  // A task_group child is an ordinary counted task node. From a worker of
  // this pool it goes on that worker's own deque, where the worker's waiter
  // pops it back (newest first) and other workers may steal it; from
  // anywhere else it goes through the injection queue. Defined in
  // pool_core_impl.hpp.

  /// Where the calling worker's deque ends now (see pop_local_above), or
  /// no_local_mark when the caller is no worker of this pool.
  static constexpr std::int64_t no_local_mark = -1;
  [[nodiscard]] std::int64_t local_mark() const noexcept;
  /// Queues `node` on the calling worker's own deque, counted as a task if
  /// `counted`. Uncounted only when something counted cannot end before the
  /// node does (a task waiting for it), so that wait() and join() cannot see
  /// the pool idle meanwhile; whoever ends such a node calls
  /// settle_uncounted_task instead of remove_finished_task. False (nothing
  /// done) when the caller is no worker of this pool, the deque is full, or
  /// the pool is stopping.
  bool push_local(task_node* node, bool counted) noexcept;
  /// Counts `node` as a task and queues it on the injection queue. False
  /// (nothing done) once the pool is stopping: no worker would run it.
  bool push_injected(task_node* node) noexcept;
  /// The calling worker's newest task if it was queued after `mark` was
  /// taken (by this worker), else null: what a waiter on that worker may run.
  task_node* pop_local_above(std::int64_t mark) noexcept;
  /// Another worker's oldest deque task, for the calling worker, waiting in
  /// a task_group, to look at (see requeue); null if none was there.
  task_node* steal_for_waiter() noexcept;
  /// Queues again, on the injection queue, a counted task that a waiter
  /// took but may not run (it is not its group's work).
  void requeue(task_node* node) noexcept;
  /// Before a thread runs other tasks while it waits: a worker holding the
  /// I/O waiter role from inside run_one hands it on first (as run_inline).
  void prepare_to_help() noexcept;
  /// Runs `f` as a task on the calling thread (context, slots, observers,
  /// counters), for a node already counted; `f` is destroyed inside.
  template <class F>
  void run_counted(F&& f, captured_context&& snapshot, const task_info& info) noexcept;

  // ---- task blocks (task_blocks.hpp) ----------------------------------------

  void* allocate_task(std::size_t size) { return blocks_.allocate(size); }
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
  /// A worker's spare map references count as work first (see
  /// worker_capture_reserve for why).
  void remove_finished_task() noexcept {
    if (CTXPOOL_UNLIKELY(this_thread_state().reserve.has_spares())) count_held_references();
    remove_work();
  }

  /// After an uncounted node (push_local) ended on the calling thread, before
  /// its owner may see it finished: what remove_finished_task does besides
  /// uncounting (the spare map references count as work first).
  void settle_uncounted_task() noexcept {
    if (CTXPOOL_UNLIKELY(this_thread_state().reserve.has_spares())) count_held_references();
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
  void set_exception_handler(exception_handler handler) { exceptions_.set(std::move(handler)); }
  void report_exception(std::exception_ptr error, const task_info& info) noexcept {
    exceptions_.report(std::move(error), info);
  }

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
  friend class wake_operation;

  template <class Header, class F>
  void enqueue_node(F&& f, captured_context&& snapshot, const task_info& info, bool check_open);

  /// Queues a counted node: on the calling worker's own deque for a fresh
  /// task submitted from a worker, else on the injection queue; then makes
  /// sure a worker will look (wake_for_new_work).
  void push(task_node* node, bool fresh) noexcept {
    if (const worker_identity me = this_thread_worker();
        fresh && me.pool == this && workers_[me.index].shared.deque.push(node)) {
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

  // The worker loop (src/worker_loop.cpp).
  void worker_main(std::size_t index, const std::string& name);
  void run_worker_loop(worker_state& me, std::size_t index);
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
  /// True when woken to look for work (counted as spinning).
  bool sleep_parked(std::size_t index);

  // The I/O waiter role (src/io_waiter.cpp; the role is described in io_waiter.hpp).
  /// Runs one ready Asio handler unless a worker sleeps in the scheduler;
  /// true if it ran one.
  bool poll_scheduler();
  /// Runs ready handlers until none is left (at most a batch); how many ran.
  /// Called by workers (the I/O waiter too, on its way out of run_one).
  std::size_t run_ready_handlers();
  /// Takes the role, already won, into the scheduler's run_one.
  void sleep_in_scheduler();
  /// Gives up the I/O waiter role the calling worker holds and wakes a
  /// parked worker to take it.
  void release_io_role() noexcept;
  void wake_io_waiter() noexcept;

  void count_held_references() noexcept;
  /// Gives the calling worker's spare map references back and uncounts them.
  void give_back_references(worker_state& me) noexcept;

  // The lifecycle (src/pool_lifecycle.cpp).
  void start_threads(const std::string& name_prefix);
  void end_threads() noexcept;
  /// Moves to `next` unless the pool is there or further already.
  void advance_phase(pool_phase next) noexcept {
    if (phase_.load(std::memory_order_relaxed) < next)
      phase_.store(next, std::memory_order_seq_cst);
  }
  [[nodiscard]] bool stopping(std::memory_order order) const noexcept {
    return phase_.load(order) >= pool_phase::stopping;
  }
  void notify_idle() noexcept;
  /// Blocks until nothing (or, with `tasks_only`, no task) is outstanding,
  /// or the threads have ended (then nothing can change).
  void wait_idle(bool tasks_only);
  /// The work_ lane of the calling thread.
  [[nodiscard]] std::size_t my_lane() const noexcept {
    const worker_identity me = this_thread_worker();
    return work_.lane_for(me.pool == this ? me.index : work_count::npos);
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
      if (const worker_identity me = this_thread_worker();
          kind == work_kind::task && me.pool == this) {
        workers_[me.index].own.idle_check_due = true;
      } else if (work_.idle(/*tasks_only=*/true)) {
        notify_idle();
      }
    }
  }
  /// The deferred half of remove_outstanding, on a worker out of work.
  void check_idle_if_due(worker_state& me) noexcept {
    if (CTXPOOL_UNLIKELY(me.own.idle_check_due)) {
      me.own.idle_check_due = false;
      if (work_.idle(/*tasks_only=*/true)) notify_idle();
    }
  }

  /// Bumps the outstanding count for a new task, refusing it once the pool is
  /// closed. Increment-then-check (with the same check-after-store in join)
  /// leaves no window in which a task slips past a join that saw zero.
  void add_task(bool check_open) {
    work_.add(my_lane(), work_kind::task);
    if (check_open &&
        CTXPOOL_UNLIKELY(phase_.load(std::memory_order_seq_cst) >= pool_phase::closed)) {
      remove_work();
      throw_pool_closed("submit/post");
    }
  }

  worker_counters& counters_for_this_thread() noexcept {
    const worker_identity me = this_thread_worker();
    return me.pool == this ? workers_[me.index].shared.counters : foreign_counters_;
  }

  /// Adds one to a counter of `counters`: a plain load and store for a
  /// worker's own counters (one writer), an atomic add for the foreign ones.
  void count(worker_counters& counters, std::atomic<std::uint64_t>& counter) noexcept {
    if (CTXPOOL_UNLIKELY(&counters == &foreign_counters_)) {
      // Many writers; a relaxed RMW is all stats() needs, and cheaper than
      // a lock for a thread that runs tasks while it waits (task_group).
      counter.fetch_add(1, std::memory_order_relaxed);
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

  worker_counters foreign_counters_;  // tasks run on a thread that is not a worker (many writers)

  work_count work_;
  // Read by every finished task, written rarely: a line of its own.
  alignas(64) std::atomic<int> waiters_{0};
  std::mutex idle_mutex_;  // with idle_cv_, wakes wait(); the move to `ended` is made under it
  std::condition_variable idle_cv_;

  task_exception_reporter exceptions_;

  std::mutex lifecycle_mutex_;  // serialises join/finish/stop, and so the phase's moves
  std::vector<std::thread> threads_;

  injection_queue injection_;
  idle_workers idle_;
  // Read by every submit and by workers at every task, written rarely.
  alignas(64) std::atomic<pool_phase> phase_{pool_phase::running};
  // Tasks Asio's execute handed over once stopping: uncounted, linked
  // through `next`, destroyed by destroy_queued_tasks.
  std::atomic<task_node*> abandoned_{nullptr};
  void keep_abandoned(task_node* node) noexcept;

  io_waiter_role io_{*this};
  task_block_recycler blocks_;

  // Asio's scheduler, a service of owner_ (as in asio::thread_pool): timers
  // and sockets made from the pool queue their completions here, and the
  // workers run it. It lives as long as owner_, which outlives this core.
  boost::asio::detail::scheduler& scheduler_;
};

}  // namespace ctxpool::detail

// The members' definitions (the per-task path and the fork-join hooks).
#include <ctxpool/detail/pool_core_impl.hpp>
