// A Boost.Asio thread pool that runs every task in the submitter's context and
// wipes thread-local residue after it.
//
// `thread_pool` is a drop-in for a hand-written worker pool. `submit(f)`
// returns a `std::future`; `post(f)` is fire-and-forget and routes exceptions
// to an installable handler. Each task runs in a *fresh copy* of the context
// its submitter had (see <ctxpool/context.hpp>): it sees the submitter's
// `context_var` values, and its own `set`s reach neither the submitter nor a
// sibling task. When a task ends, every `lifetime::task` thread-local slot it
// wrote is wiped and watched `thread_local`s are restored (see
// <ctxpool/thread_local.hpp>), so the next task on that worker starts clean.
//
// `get_executor()` is a standard Asio executor: `asio::post`, `dispatch`,
// `defer`, strands, timers and `asio::co_spawn` work with it. Handlers run
// through it continue the logical context that scheduled them, and a
// coroutine spawned on the pool keeps one context for its whole life, across
// every `co_await`, also when it resumes on another worker or its operation
// completes on another io_context. `bind_context(handler)` does the same for a
// handler that completes on an executor that is not ctxpool's. A coroutine
// `co_spawn`ed on the pool is a new task (its own token identity, a snapshot
// of its spawner's values); `bind_context(ctx, handler)` and `in_context(ctx,
// executor)` run a handler or every step of a coroutine inside a given
// context itself (asyncio's `context=`).
//
// The context comes back because Asio asks the handler's executor for
// `outstanding_work.tracked` when an operation starts, and that executor
// captures the context then. Every Asio operation does; a hand-written
// asynchronous operation must do the same (as Asio's rules require anyway),
// or a coroutine awaiting it resumes in a copy of its context: values stay
// right, but a token set before the `co_await` can no longer be reset.
//
// @par Thread safety
// All member functions of `thread_pool` may be called concurrently from any
// thread, except that `wait()`, `join()`, `stop()` and the destructor must not
// be called from one of the pool's own threads (`wait`, `join` and `stop`
// throw `std::logic_error` there instead of deadlocking). Executors may be
// copied and used from any thread. A task that blocks on another task's
// future can deadlock a pool whose workers all do the same, as with any
// fixed-size pool; prefer continuations (coroutines, post) inside the pool.
//
// The pool is also an Asio execution context, as `asio::thread_pool` is:
// `asio::post(pool, f)`, `dispatch`, `defer`, `asio::make_strand(pool)`,
// `asio::steady_timer t(pool)`, sockets built from the pool,
// `asio::co_spawn(pool, ...)` and `use_service`/`make_service` work, and
// `query(ex, execution::context)` returns the pool, so code written for
// `asio::thread_pool` moves by changing the type.
//
// @par Lifetime
// The pool owns its threads: none is detached, and all have ended when
// `join()`, `stop()` or the destructor returns. The three ends of life:
// - `join()` waits until nothing is queued or running and no tracked work
//   (a pending timer or socket operation started through the executor) is
//   left, then ends the threads. Pending I/O keeps it waiting.
// - The destructor runs every task already queued, including work those tasks
//   submit, so nothing queued is lost; it does *not* wait for pending I/O.
//   Once no task is queued or running it ends the threads and destroys the
//   handlers of operations still pending (a timer due in an hour, an accept
//   nobody connects to), together with the coroutine frames that await them,
//   as `asio::thread_pool`'s destructor does. It therefore returns as soon as
//   the queued tasks are done.
// - `stop()` abandons queued tasks and pending operations at once: they are
//   destroyed before it returns and futures report
//   `std::future_errc::broken_promise`. Threads that keep handing handlers
//   to the executor meanwhile do not keep it waiting.
// Executors, timers, sockets and other I/O objects made from the pool must
// not outlive it (as with any Asio execution context); an executor that
// tracks work keeps `wait()` and `join()` waiting while it exists. Work
// handed to the executor after the end is kept unrun and destroyed with the
// pool, as an io_context treats a stopped queue.
//
// A task's context values outlive the task only briefly: a worker keeps a
// finished task's reference to its context map for the next task from the
// same context (so that tasks spawning tasks pay no shared reference count),
// and lets go of it before it starts a task from another context or when it
// runs out of work. Once `wait()` returns, every value that only finished
// tasks held has been destroyed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <source_location>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/associator.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>
#include <boost/asio/strand.hpp>

#include <ctxpool/context.hpp>
#include <ctxpool/detail/pool_core.hpp>
#include <ctxpool/hooks.hpp>
#include <ctxpool/thread_local.hpp>

namespace ctxpool {

/// Thrown by `submit` and `post` on a pool that has been joined or stopped.
class pool_closed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// How to build a `thread_pool`.
struct thread_pool_options {
  /// Worker threads; 0 means one per hardware thread.
  std::size_t threads = 0;
  /// Workers are named `<prefix><index>` (Linux truncates names to 15 bytes).
  std::string name_prefix = "ctxpool-";
  /// Told about thread start/stop and every task's begin and end. Not owned:
  /// each must outlive the pool. Called concurrently from the workers.
  std::vector<task_observer*> observers;
};

/// A snapshot of a pool's activity. Counters are read one after another while
/// workers keep running, so under load the figures are approximate.
struct thread_pool_stats {
  std::size_t threads = 0;    ///< worker threads
  std::size_t queued = 0;     ///< tasks accepted and not yet started
  std::size_t running = 0;    ///< tasks running now
  std::uint64_t completed = 0;  ///< tasks that have finished (returned or thrown)
};

class thread_pool;

namespace detail {
/// The pool core behind a thread_pool, for the parts of the executor layer
/// built beside it (task_group).
[[nodiscard]] pool_core& core_of(thread_pool& pool) noexcept;
}  // namespace detail

/// The Asio standard executor of a `thread_pool` (`thread_pool::executor_type`).
///
/// Supports `execute`, `query` (context, blocking, relationship,
/// outstanding_work, allocator, mapping, occupancy) and `require`/`prefer`
/// of blocking.possibly/never, relationship.fork/continuation and
/// outstanding_work.tracked/untracked.
///
/// Context propagation: a function it executes runs in a fresh context that
/// *continues* a captured one (tokens set there can be reset). An executor
/// obtained with `outstanding_work.tracked` captures the current context at
/// that moment and runs everything in it; Asio takes such an executor on the
/// initiating thread whenever an asynchronous operation starts, which is what
/// brings a coroutine's context back when its operation completes. Other
/// executors capture the context at `execute` time.
class pool_executor {
 public:
  pool_executor(const pool_executor& other) noexcept
      : tagged_core_(other.tagged_core_), snapshot_(other.snapshot_) {
    if (tracked()) core().add_tracked();
  }
  pool_executor(pool_executor&& other) noexcept
      : tagged_core_(std::exchange(other.tagged_core_,
                                   other.tagged_core_ & ~std::uintptr_t{tracked_bit})),
        snapshot_(std::move(other.snapshot_)) {}
  pool_executor& operator=(const pool_executor& other) noexcept {
    if (this != &other) *this = pool_executor(other);
    return *this;
  }
  pool_executor& operator=(pool_executor&& other) noexcept {
    if (this != &other) {
      if (tracked()) core().remove_tracked();
      tagged_core_ =
          std::exchange(other.tagged_core_, other.tagged_core_ & ~std::uintptr_t{tracked_bit});
      snapshot_ = std::move(other.snapshot_);
    }
    return *this;
  }
  ~pool_executor() {
    if (tracked()) core().remove_tracked();
  }

  /// Runs `f` on the pool: inline when called from one of the pool's threads
  /// and blocking.never was not required, else queued. Never throws
  /// pool_closed: after the pool was joined or stopped the function is kept
  /// unrun and destroyed with the pool, as an io_context treats a stopped queue.
  template <class F>
  void execute(F&& f) const {
    detail::captured_context captured =
        has_snapshot() ? snapshot_
                       : (core().propagates() ? detail::captured_context::capture()
                                              : detail::captured_context{});
    const task_info info{core().next_task_id(), {}, "asio handler"};
    if (!(bits() & never_bit) && core().running_in_this_thread()) {
      core().run_inline(std::forward<F>(f), std::move(captured), /*continuation=*/true, info);
    } else {
      core().enqueue(std::forward<F>(f), std::move(captured), /*continuation=*/true, info,
                     /*check_open=*/false);
    }
  }

  /// The pool itself: the execution context that hosts its timers, sockets
  /// and services (as asio::thread_pool's executor answers).
  [[nodiscard]] thread_pool& query(boost::asio::execution::context_t) const noexcept;
  [[nodiscard]] boost::asio::execution::blocking_t query(
      boost::asio::execution::blocking_t) const noexcept {
    if (bits() & never_bit) return boost::asio::execution::blocking.never;
    return boost::asio::execution::blocking.possibly;
  }
  [[nodiscard]] boost::asio::execution::relationship_t query(
      boost::asio::execution::relationship_t) const noexcept {
    if (bits() & continuation_bit) return boost::asio::execution::relationship.continuation;
    return boost::asio::execution::relationship.fork;
  }
  [[nodiscard]] boost::asio::execution::outstanding_work_t query(
      boost::asio::execution::outstanding_work_t) const noexcept {
    if (tracked()) return boost::asio::execution::outstanding_work.tracked;
    return boost::asio::execution::outstanding_work.untracked;
  }
  /// Tasks are allocated with Asio's recycling allocator; there is no other.
  template <class OtherAllocator>
  [[nodiscard]] std::allocator<void> query(
      boost::asio::execution::allocator_t<OtherAllocator>) const noexcept {
    return {};
  }
  [[nodiscard]] static constexpr boost::asio::execution::mapping_t query(
      boost::asio::execution::mapping_t) noexcept {
    return boost::asio::execution::mapping.thread;
  }
  /// The number of worker threads (how much work is worth handing out at once).
  [[nodiscard]] std::size_t query(boost::asio::execution::occupancy_t) const noexcept {
    return core().thread_count();
  }

  [[nodiscard]] pool_executor require(boost::asio::execution::blocking_t::possibly_t) const {
    return with_bits(static_cast<std::uint8_t>(bits() & ~never_bit));
  }
  [[nodiscard]] pool_executor require(boost::asio::execution::blocking_t::never_t) const {
    return with_bits(static_cast<std::uint8_t>(bits() | never_bit));
  }
  [[nodiscard]] pool_executor require(boost::asio::execution::relationship_t::fork_t) const {
    return with_bits(static_cast<std::uint8_t>(bits() & ~continuation_bit));
  }
  [[nodiscard]] pool_executor require(
      boost::asio::execution::relationship_t::continuation_t) const {
    return with_bits(static_cast<std::uint8_t>(bits() | continuation_bit));
  }
  /// Counts as outstanding work while it (or a copy) lives, and captures the
  /// calling thread's context now: see the class comment.
  [[nodiscard]] pool_executor require(boost::asio::execution::outstanding_work_t::tracked_t) const {
    return pool_executor(&core(),
                         core().propagates() ? detail::captured_context::capture()
                                             : detail::captured_context{},
                         static_cast<std::uint8_t>(bits() | tracked_bit | snapshot_bit));
  }
  [[nodiscard]] pool_executor require(
      boost::asio::execution::outstanding_work_t::untracked_t) const {
    return pool_executor(&core(), {},
                         static_cast<std::uint8_t>(bits() & ~(tracked_bit | snapshot_bit)));
  }

  /// Whether the calling thread is one of the pool's workers.
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return core().running_in_this_thread();
  }

  /// Same pool and same properties (the captured context does not count,
  /// as an allocator would not).
  friend bool operator==(const pool_executor& a, const pool_executor& b) noexcept {
    return a.tagged_core_ == b.tagged_core_;
  }
  friend bool operator!=(const pool_executor& a, const pool_executor& b) noexcept {
    return !(a == b);
  }

 private:
  friend class thread_pool;
  friend class boost::asio::strand<pool_executor>;  // binds each handler to its context
  static constexpr std::uint8_t never_bit = 1;
  static constexpr std::uint8_t continuation_bit = 2;
  static constexpr std::uint8_t tracked_bit = 4;
  static constexpr std::uint8_t snapshot_bit = 8;

  static constexpr std::uintptr_t bit_mask = 15;

  pool_executor(detail::pool_core* core, detail::captured_context snapshot,
                std::uint8_t bits) noexcept
      : tagged_core_(reinterpret_cast<std::uintptr_t>(core) | bits),
        snapshot_(std::move(snapshot)) {
    static_assert(alignof(detail::pool_core) > bit_mask, "the property bits live in the pointer");
    if (tracked()) core->add_tracked();
  }

  [[nodiscard]] pool_executor with_bits(std::uint8_t bits) const {
    return pool_executor(&core(), snapshot_, bits);
  }
  [[nodiscard]] detail::pool_core& core() const noexcept {
    return *reinterpret_cast<detail::pool_core*>(tagged_core_ & ~bit_mask);
  }
  [[nodiscard]] std::uint8_t bits() const noexcept {
    return static_cast<std::uint8_t>(tagged_core_ & bit_mask);
  }
  [[nodiscard]] bool tracked() const noexcept { return (bits() & tracked_bit) != 0; }
  [[nodiscard]] bool has_snapshot() const noexcept { return (bits() & snapshot_bit) != 0; }

  // The pool and the property bits in one word: with the snapshot the
  // executor is 24 bytes, small enough for any_io_executor to store inline
  // (no allocation, no shared reference count) when a coroutine uses it.
  std::uintptr_t tagged_core_;
  detail::captured_context snapshot_;  // meaningful when snapshot_bit is set
};

static_assert(sizeof(pool_executor) <= 24, "keep pool_executor within any_io_executor's buffer");

/// A fixed set of worker threads running tasks in their submitters' contexts.
///
/// @par Exceptions
/// A task started with `submit` delivers its exception through its future
/// (which is why `submit` is `[[nodiscard]]`). One started with `post`, and
/// an Asio handler run on the pool, hands it to the exception handler; the
/// default prints the exception and the task's submit site to stderr and the
/// pool keeps running. Exceptions are never swallowed silently and never
/// terminate the process.
///
/// @par What a task goes through on a worker
/// It enters a fresh context holding the snapshot taken when it was
/// submitted; opens a `task_slot_scope`; observers' `on_task_begin` run; the
/// function runs and its result or exception is delivered; the slot scope
/// ends, wiping every `lifetime::task` slot the task wrote and restoring
/// watched `thread_local`s; observers' `on_task_end` run (in reverse order);
/// the context is left. Every step also happens when the function throws.
///
/// @par Scheduling and order
/// Each task is one small block (64 bytes with a 32-byte callable) in one of
/// three kinds of queue. Tasks submitted from outside the pool, and Asio
/// handlers, go through a shared injection queue and start in the order they
/// were queued, as far as several workers taking them at once allow: a
/// worker takes up to 17 at a time, runs the first and keeps the others in
/// its inbox, which it and idle workers take oldest first. One worker runs
/// them strictly in order; with several, a task may start before the up to
/// 16 that another worker holds. A task submitted from a worker goes to that
/// worker's own deque: the worker runs the newest first (recursive work
/// stays in cache) and idle workers steal the oldest. Every 61 tasks a
/// worker looks at the other workers' inboxes, its own, the injection queue
/// and its own oldest task first, so no queued task waits for a stream of
/// newer ones to end, or for a worker busy with a long task. Strands remain
/// the way to serialise.
///
/// An idle worker first yields its core once (a thread its last task woke,
/// such as a submitter waiting for a future, may run there), busy-waits a
/// few microseconds (half the workers at most, the others skip this), and
/// then sleeps: one in Asio's scheduler, a service of the
/// pool (as in asio::thread_pool) hosting timers and sockets made from the
/// pool, so that timers and I/O wake it; the others on a futex, the cheaper
/// wake-up, which submitters prefer.
/// Asio's `dispatch` from a worker runs inline; everything else is queued.
class thread_pool : public boost::asio::execution_context {
 public:
  /// The Asio executor type (`get_executor()`).
  using executor_type = pool_executor;

  /// One worker per hardware thread.
  thread_pool() : thread_pool(thread_pool_options{}) {}

  /// `threads` workers.
  /// @throws std::invalid_argument if `threads` is 0 or larger than max_threads.
  explicit thread_pool(std::size_t threads)
      : thread_pool(thread_pool_options{checked_count(threads), "ctxpool-", {}}) {}

  /// A pool built from `options`.
  /// @throws std::invalid_argument for a thread count above max_threads.
  explicit thread_pool(thread_pool_options options) : thread_pool(std::move(options), {}) {}

  /// Test and benchmark use only: `tuning` can switch propagation and wipe off.
  thread_pool(thread_pool_options options, detail::pool_tuning tuning);

  /// Runs every queued task (and what they submit), then ends the threads
  /// and destroys pending operations (timer waits, socket operations) and the
  /// coroutines awaiting them without waiting for them: see the header's
  /// Lifetime paragraph. Must not run on one of the pool's threads (the
  /// process aborts with a message saying so).
  ~thread_pool();

  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  /// The most threads a pool accepts: more is a mistake (a negative count
  /// converted to size_t, say), not a configuration.
  static constexpr std::size_t max_threads = 4096;

  /// Runs `f()` on a worker in a fresh copy of the caller's context.
  /// Accepts move-only callables.
  /// @returns a future with `f`'s result or exception; it reports
  ///          `broken_promise` if `stop()` destroys the task before it runs.
  /// @throws pool_closed after `join()` or `stop()`.
  template <class F>
  [[nodiscard]] std::future<std::invoke_result_t<std::decay_t<F>&>> submit(
      F&& f, std::source_location where = std::source_location::current()) {
    using result = std::invoke_result_t<std::decay_t<F>&>;
    std::promise<result> promise;
    std::future<result> future = promise.get_future();
    core_->enqueue(
        [promise = std::move(promise), f = std::forward<F>(f)]() mutable {
          try {
            if constexpr (std::is_void_v<result>) {
              f();
              promise.set_value();
            } else {
              promise.set_value(f());
            }
          } catch (...) {
            promise.set_exception(std::current_exception());
          }
        },
        capture(), /*continuation=*/false, task_info{core_->next_task_id(), where, {}},
        /*check_open=*/true);
    return future;
  }

  /// Runs `f(args...)` on a worker, as `std::async(f, args...)` does: `f` and
  /// the arguments are copied or moved into the task (use `std::ref` to pass
  /// a reference) and passed as rvalues. The submit site is recorded as for
  /// `submit(f)`; up to four arguments (bind more into a lambda).
  ///
  /// A wrapper that submits for its caller passes the caller's location on,
  /// so findings and exception reports name the real submit site rather than
  /// the wrapper: give the wrapper a defaulted `std::source_location` of its
  /// own and hand it to `submit`/`post` as the last argument, or, for a
  /// variadic wrapper (where a default cannot follow the pack), to
  /// `submit_at`/`post_at`:
  /// @code
  /// template <class F>
  /// auto traced(ctxpool::thread_pool& pool, F&& f,
  ///             std::source_location where = std::source_location::current()) {
  ///   return pool.submit(std::forward<F>(f), where);
  /// }
  /// template <class F, class... Args>
  /// auto traced_call(std::source_location where, ctxpool::thread_pool& pool, F&& f,
  ///                  Args&&... args) {
  ///   return pool.submit_at(where, std::forward<F>(f), std::forward<Args>(args)...);
  /// }
  /// @endcode
  template <class F, class A1>
  [[nodiscard]] auto submit(F&& f, A1&& a1,
                            std::source_location where = std::source_location::current()) {
    return submit_at(where, std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  [[nodiscard]] auto submit(F&& f, A1&& a1, A2&& a2,
                            std::source_location where = std::source_location::current()) {
    return submit_at(where, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  [[nodiscard]] auto submit(F&& f, A1&& a1, A2&& a2, A3&& a3,
                            std::source_location where = std::source_location::current()) {
    return submit_at(where, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                     std::forward<A3>(a3));
  }
  template <class F, class A1, class A2, class A3, class A4>
  [[nodiscard]] auto submit(F&& f, A1&& a1, A2&& a2, A3&& a3, A4&& a4,
                            std::source_location where = std::source_location::current()) {
    return submit_at(where, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                     std::forward<A3>(a3), std::forward<A4>(a4));
  }

  /// `submit(f, args...)` with the submit site given explicitly: what a
  /// wrapper calls with its own caller's `std::source_location`.
  template <class F, class... Args>
  [[nodiscard]] auto submit_at(std::source_location where, F&& f, Args&&... args) {
    return submit(bind_arguments(std::forward<F>(f), std::forward<Args>(args)...), where);
  }

  /// Runs `f()` on a worker in a fresh copy of the caller's context, without
  /// a future: an exception goes to the exception handler.
  /// @throws pool_closed after `join()` or `stop()`.
  template <class F>
  void post(F&& f, std::source_location where = std::source_location::current()) {
    core_->enqueue(std::forward<F>(f), capture(), /*continuation=*/false,
                   task_info{core_->next_task_id(), where, {}}, /*check_open=*/true);
  }

  /// Runs `f(args...)` on a worker without a future, the arguments taken as
  /// `submit(f, args...)` takes them; up to four arguments.
  template <class F, class A1>
  void post(F&& f, A1&& a1, std::source_location where = std::source_location::current()) {
    post_at(where, std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  void post(F&& f, A1&& a1, A2&& a2,
            std::source_location where = std::source_location::current()) {
    post_at(where, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  void post(F&& f, A1&& a1, A2&& a2, A3&& a3,
            std::source_location where = std::source_location::current()) {
    post_at(where, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
            std::forward<A3>(a3));
  }
  template <class F, class A1, class A2, class A3, class A4>
  void post(F&& f, A1&& a1, A2&& a2, A3&& a3, A4&& a4,
            std::source_location where = std::source_location::current()) {
    post_at(where, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
            std::forward<A3>(a3), std::forward<A4>(a4));
  }

  /// `post(f, args...)` with the submit site given explicitly (see submit_at).
  template <class F, class... Args>
  void post_at(std::source_location where, F&& f, Args&&... args) {
    post(bind_arguments(std::forward<F>(f), std::forward<Args>(args)...), where);
  }

  /// The pool's Asio executor (blocking.possibly, relationship.fork,
  /// outstanding_work.untracked): it captures the context at each `execute`.
  [[nodiscard]] executor_type get_executor() const noexcept {
    return executor_type(core_.get(), {}, 0);
  }

  /// Blocks until no task is queued or running and no tracked work (an
  /// operation started through the executor, such as a timer a coroutine
  /// awaits) is pending. The pool stays usable.
  /// @throws std::logic_error when called from one of the pool's threads.
  void wait() { core_->wait(); }

  /// `wait()`, then ends the threads; afterwards `submit`/`post` throw
  /// pool_closed. Tasks running during the join may still submit. Idempotent.
  /// @throws std::logic_error when called from one of the pool's threads.
  void join() { core_->join(); }

  /// Lets running tasks finish, destroys every queued task (their futures
  /// report broken_promise) and every pending operation's handler (a timer
  /// wait, a coroutine suspended on one), and ends the threads. Idempotent.
  /// A `submit` racing it either throws pool_closed or has its task
  /// destroyed before stop() returns.
  /// @throws std::logic_error when called from one of the pool's threads.
  void stop();

  /// Replaces the handler for exceptions of `post`ed tasks and Asio handlers;
  /// an empty function restores the default (print to stderr and continue).
  /// The handler runs on the worker, inside the failed task's context; an
  /// exception it throws is printed, not propagated.
  void set_exception_handler(exception_handler handler) {
    core_->set_exception_handler(std::move(handler));
  }

  /// The number of worker threads.
  [[nodiscard]] std::size_t thread_count() const noexcept { return core_->thread_count(); }

  /// Queued, running and completed task counts (approximate under load).
  [[nodiscard]] thread_pool_stats stats() const noexcept;
  /// Tasks accepted and not yet started (`stats().queued`).
  [[nodiscard]] std::size_t tasks_queued() const noexcept { return stats().queued; }
  /// Tasks running now (`stats().running`).
  [[nodiscard]] std::size_t tasks_running() const noexcept { return stats().running; }
  /// Tasks that have finished (`stats().completed`).
  [[nodiscard]] std::uint64_t tasks_completed() const noexcept { return stats().completed; }

  /// Whether the calling thread is one of this pool's workers.
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return core_->running_in_this_thread();
  }

 private:
  static std::size_t checked_count(std::size_t threads);
  /// `f` and its arguments decay-copied into one callable, invoked with
  /// rvalues as std::async invokes (no arguments: `f` itself, unchanged).
  template <class F, class... Args>
  static decltype(auto) bind_arguments(F&& f, Args&&... args) {
    if constexpr (sizeof...(Args) == 0) {
      return std::forward<F>(f);
    } else {
      return [f = std::forward<F>(f), ... args = std::forward<Args>(args)]() mutable
                 -> std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...> {
        return std::invoke(std::move(f), std::move(args)...);
      };
    }
  }
  [[nodiscard]] detail::captured_context capture() const noexcept {
    return core_->propagates() ? detail::captured_context::capture() : detail::captured_context{};
  }

  friend detail::pool_core& detail::core_of(thread_pool& pool) noexcept;
  std::unique_ptr<detail::pool_core> core_;
};

inline thread_pool& pool_executor::query(boost::asio::execution::context_t) const noexcept {
  return static_cast<thread_pool&>(core().owner());
}

namespace detail {

/// How a bound handler runs: in a continuation of a snapshot taken at binding.
struct continue_snapshot {
  captured_context snapshot;
  template <class F>
  decltype(auto) invoke(F&& f) const {
    fresh_context_scope scope(snapshot, /*continuation=*/true);
    return std::forward<F>(f)();
  }
};

/// How a bound handler runs: inside a given context itself (context::run).
struct enter_context {
  context ctx;
  template <class F>
  decltype(auto) invoke(F&& f) const {
    return ctx.run(std::forward<F>(f));
  }
};

}  // namespace detail

/// A handler that runs in a context chosen when it was bound: a continuation
/// of the context current then (`bind_context(handler)`), or a given context
/// itself (`bind_context(ctx, handler)`). Asio sees the wrapped handler's
/// associated executor, allocator and cancellation slot.
template <class Handler, class Binding>
class basic_context_handler {
 public:
  template <class H>
  basic_context_handler(H&& handler, Binding binding)
      : handler_(std::forward<H>(handler)), binding_(std::move(binding)) {}

  /// Calls the handler inside its bound context.
  /// @throws context_error for `bind_context(ctx, ...)` when `ctx` is
  ///         already entered, on any thread (as `context::run` does).
  template <class... Args>
  decltype(auto) operator()(Args&&... args) & {
    return binding_.invoke([&]() -> decltype(auto) {
      return std::invoke(handler_, std::forward<Args>(args)...);
    });
  }
  template <class... Args>
  decltype(auto) operator()(Args&&... args) const& {
    return binding_.invoke([&]() -> decltype(auto) {
      return std::invoke(handler_, std::forward<Args>(args)...);
    });
  }
  /// Asio calls completion handlers as rvalues; the wrapped one is called so too.
  template <class... Args>
  decltype(auto) operator()(Args&&... args) && {
    return binding_.invoke([&]() -> decltype(auto) {
      return std::invoke(std::move(handler_), std::forward<Args>(args)...);
    });
  }

  /// The wrapped handler.
  [[nodiscard]] Handler& get() noexcept { return handler_; }
  [[nodiscard]] const Handler& get() const noexcept { return handler_; }

 private:
  Handler handler_;
  Binding binding_;
};

/// A handler bound with `bind_context(handler)`.
template <class Handler>
using context_bound_handler = basic_context_handler<Handler, detail::continue_snapshot>;

/// A handler bound with `bind_context(ctx, handler)`.
template <class Handler>
using context_entering_handler = basic_context_handler<Handler, detail::enter_context>;

/// Captures the current context now and returns a handler that runs
/// `handler` inside it (continuing it: tokens set before binding can be reset
/// inside). Use it for completion handlers that run on an executor that is
/// not ctxpool's, such as a foreign io_context; handlers run through the
/// pool's executor need no binding.
template <class Handler>
[[nodiscard]] context_bound_handler<std::decay_t<Handler>> bind_context(Handler&& handler) {
  return context_bound_handler<std::decay_t<Handler>>(
      std::forward<Handler>(handler), detail::continue_snapshot{detail::captured_context::capture()});
}

/// Returns a handler that runs `handler` inside `ctx` itself, as
/// `ctx.run(handler, args...)` would (asyncio's `call_soon(cb, context=ctx)`):
/// its `set`s stay in `ctx` and are seen there afterwards. Calling it while
/// `ctx` is entered, on any thread, throws `context_error` (run's rule).
template <class Handler>
[[nodiscard]] context_entering_handler<std::decay_t<Handler>> bind_context(context ctx,
                                                                           Handler&& handler) {
  return context_entering_handler<std::decay_t<Handler>>(std::forward<Handler>(handler),
                                                         detail::enter_context{std::move(ctx)});
}

namespace detail {

/// Completions a step of an `in_context` coroutine made that must become
/// visible only once the step has left its context: Asio completes a
/// coroutine's co_spawn handler from inside its last step, and a caller woken
/// by it (a future) would otherwise find the context still entered on the
/// worker. The step's wrapper (context_executor::execute) owns the list and
/// runs it after `context::run` returns; steps that continue inline share
/// the outer step's list.
class after_leave_scope {
 public:
  after_leave_scope() noexcept : outer_(std::exchange(current_, this)) {}
  after_leave_scope(const after_leave_scope&) = delete;
  after_leave_scope& operator=(const after_leave_scope&) = delete;
  ~after_leave_scope() {
    if (current_ == this) current_ = outer_;
    // Reached only when run() could not: drop what was deferred.
    while (deferred_ != nullptr) delete std::exchange(deferred_, deferred_->next);
  }

  /// The innermost scope of the calling thread, or null.
  [[nodiscard]] static after_leave_scope* current() noexcept { return current_; }

  /// Keeps `f` to be called by run(), in the order deferred.
  template <class F>
  void defer(F&& f) {
    auto* call = new deferred_call<std::decay_t<F>>(std::forward<F>(f));
    *tail_ = call;
    tail_ = &call->next;
  }

  /// Leaves the scope (later completions are not deferred to it) and calls
  /// what was deferred.
  void run() {
    current_ = outer_;
    while (deferred_ != nullptr) {
      std::unique_ptr<call_base> call(std::exchange(deferred_, deferred_->next));
      call->call();
    }
  }

 private:
  struct call_base {
    virtual ~call_base() = default;
    virtual void call() = 0;
    call_base* next = nullptr;
  };
  template <class F>
  struct deferred_call final : call_base {
    explicit deferred_call(F&& function) : f(std::move(function)) {}
    explicit deferred_call(const F& function) : f(function) {}
    void call() override { std::move(f)(); }
    F f;
  };

  static inline thread_local after_leave_scope* current_ = nullptr;
  after_leave_scope* outer_;
  call_base* deferred_ = nullptr;
  call_base** tail_ = &deferred_;
};

/// A coroutine's completion handler that, called inside a step of an
/// `in_context` coroutine, waits for the step to leave the context (see
/// after_leave_scope). Asio sees the wrapped handler's associated executor,
/// allocator and cancellation slot.
template <class Handler>
class completion_after_leave {
 public:
  explicit completion_after_leave(Handler handler) : handler_(std::move(handler)) {}

  template <class... Args>
  void operator()(Args&&... args) && {
    if (after_leave_scope* scope = after_leave_scope::current()) {
      scope->defer([handler = std::move(handler_),
                    ... values = std::decay_t<Args>(std::forward<Args>(args))]() mutable {
        std::move(handler)(std::move(values)...);
      });
      return;
    }
    std::move(handler_)(std::forward<Args>(args)...);
  }

  /// The wrapped handler.
  [[nodiscard]] const Handler& get() const noexcept { return handler_; }

 private:
  Handler handler_;
};

}  // namespace detail

/// An executor that runs every function inside one given context itself,
/// through another executor (asyncio's `create_task(coro, context=ctx)`).
/// Made by `in_context`, which puts a strand between the two.
///
/// `asio::co_spawn(ctxpool::in_context(ctx, pool.get_executor()), coro(), token)`
/// runs every step of the coroutine inside `ctx`: its `set`s are seen in
/// `ctx` after it completes, and its steps share `ctx`'s token identity.
/// Because a context can be entered by one thread at a time, the functions
/// run one after another (the strand): a step resumed on another worker
/// never overlaps the end of the step before it. Two such executors (two
/// `in_context` calls), or one and `ctx.run` elsewhere, do overlap: a step
/// that finds `ctx` entered fails with `context_error`, which goes to the
/// pool's exception handler, and its coroutine is destroyed. A coroutine
/// spawned from inside with `co_await this_coro::executor` is a new task on
/// the underlying pool with a copy of `ctx`, as asyncio's `create_task` copies.
///
/// The completion of such a coroutine (the future of `use_future`, a callback
/// token) is delivered only after its last step has left `ctx`: a caller that
/// has seen it finish may enter `ctx`, or spawn into it again, at once.
template <class Executor>
class context_executor {
 public:
  /// Runs through `inner` inside `ctx`.
  context_executor(context ctx, Executor inner) noexcept(
      std::is_nothrow_move_constructible_v<Executor>)
      : ctx_(std::move(ctx)), inner_(std::move(inner)) {}

  /// Hands `f` to the inner executor, to be called inside the context. When
  /// the caller is already inside the context on a thread of the inner
  /// executor, which may run `f` inline (dispatch), `f` runs at once: it is
  /// the same step continuing, and entering again would be an error.
  template <class F>
  void execute(F&& f) const {
    if constexpr (requires { inner_.running_in_this_thread(); }) {
      if (ctx_.is_current() &&
          boost::asio::query(inner_, boost::asio::execution::blocking) !=
              boost::asio::execution::blocking.never &&
          inner_.running_in_this_thread()) {
        std::decay_t<F> local(std::forward<F>(f));
        std::move(local)();
        return;
      }
    }
    inner_.execute([ctx = ctx_, f = std::forward<F>(f)]() mutable {
      detail::after_leave_scope after_leave;
      try {
        ctx.run(std::move(f));
      } catch (...) {
        after_leave.run();
        throw;
      }
      after_leave.run();
    });
  }

  /// Answered by the inner executor.
  template <class P>
    requires boost::asio::can_query<const Executor&, P>::value
  [[nodiscard]] decltype(auto) query(const P& p) const
      noexcept(boost::asio::is_nothrow_query<const Executor&, P>::value) {
    return boost::asio::query(inner_, p);
  }

  /// The inner executor with the property, still inside the context.
  template <class P>
    requires boost::asio::can_require<const Executor&, P>::value
  [[nodiscard]] auto require(const P& p) const {
    using result = std::decay_t<typename boost::asio::require_result<const Executor&, P>::type>;
    return context_executor<result>(ctx_, boost::asio::require(inner_, p));
  }

  /// The executor functions are handed to.
  [[nodiscard]] const Executor& inner_executor() const noexcept { return inner_; }
  /// The context every function runs in.
  [[nodiscard]] const context& bound_context() const noexcept { return ctx_; }

  friend bool operator==(const context_executor& a, const context_executor& b) noexcept {
    return a.ctx_ == b.ctx_ && a.inner_ == b.inner_;
  }
  friend bool operator!=(const context_executor& a, const context_executor& b) noexcept {
    return !(a == b);
  }

 private:
  context ctx_;
  Executor inner_;
};

/// An executor running everything inside `ctx` itself, one function at a
/// time, through a new strand of `ex`.
template <class Executor>
[[nodiscard]] context_executor<boost::asio::strand<Executor>> in_context(context ctx,
                                                                         const Executor& ex) {
  return context_executor<boost::asio::strand<Executor>>(std::move(ctx),
                                                         boost::asio::strand<Executor>(ex));
}

}  // namespace ctxpool

#include <ctxpool/detail/strand.hpp>
#include <ctxpool/detail/co_spawn.hpp>

namespace boost::asio {

/// Forwards every associated characteristic (executor, allocator,
/// cancellation slot, ...) to the wrapped handler, as `bind_executor` does.
template <template <class, class> class Associator, class Handler, class Binding,
          class DefaultCandidate>
struct associator<Associator, ctxpool::basic_context_handler<Handler, Binding>, DefaultCandidate> {
  using type = typename Associator<Handler, DefaultCandidate>::type;

  static type get(const ctxpool::basic_context_handler<Handler, Binding>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.get());
  }
  static auto get(const ctxpool::basic_context_handler<Handler, Binding>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.get(), c)) {
    return Associator<Handler, DefaultCandidate>::get(h.get(), c);
  }
};

/// The same for a coroutine completion deferred past its context's leaving.
template <template <class, class> class Associator, class Handler, class DefaultCandidate>
struct associator<Associator, ctxpool::detail::completion_after_leave<Handler>, DefaultCandidate> {
  using type = typename Associator<Handler, DefaultCandidate>::type;

  static type get(const ctxpool::detail::completion_after_leave<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.get());
  }
  static auto get(const ctxpool::detail::completion_after_leave<Handler>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.get(), c)) {
    return Associator<Handler, DefaultCandidate>::get(h.get(), c);
  }
};

}  // namespace boost::asio
