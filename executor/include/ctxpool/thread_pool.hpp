// thread_pool: a Boost.Asio thread pool that runs every task in the
// submitter's context and wipes thread-local residue after it.
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
#include <functional>
#include <future>
#include <memory>
#include <source_location>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/execution_context.hpp>

#include <ctxpool/context.hpp>
#include <ctxpool/detail/pool_core.hpp>
#include <ctxpool/hooks.hpp>
#include <ctxpool/pool_executor.hpp>
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
  std::size_t threads = 0;      ///< worker threads
  std::size_t queued = 0;       ///< tasks accepted and not yet started
  std::size_t running = 0;      ///< tasks running now
  std::uint64_t completed = 0;  ///< tasks that have finished (returned or thrown)
};

class thread_pool;

namespace detail {
/// The pool core behind a thread_pool, for the parts of the executor layer
/// built beside it (task_group).
[[nodiscard]] pool_core& core_of(thread_pool& pool) noexcept;
}  // namespace detail

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
/// submitted; opens a `slot_wipe_scope`; observers' `on_task_begin` run; the
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
/// worker takes a small batch at a time (detail::injection_batch), runs the
/// first and keeps the others in its inbox, which it and idle workers take
/// oldest first. One worker runs them strictly in order; with several, a
/// task may start before the rest of a batch that another worker holds. A
/// task submitted from a worker goes to that worker's own deque: the worker
/// runs the newest first (recursive work stays in cache) and idle workers
/// steal the oldest. Every few dozen tasks (fairness_interval in
/// src/worker_loop.cpp) a worker looks at the other workers' inboxes, its
/// own, the injection queue and its own oldest task first, so no queued task
/// waits for a stream of newer ones to end, or for a worker busy with a long
/// task. Strands remain
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
        core_->capture(), /*continuation=*/false, task_info{core_->next_task_id(), where, {}},
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
    core_->enqueue(std::forward<F>(f), core_->capture(), /*continuation=*/false,
                   task_info{core_->next_task_id(), where, {}}, /*check_open=*/true);
  }

  /// Runs `f(args...)` on a worker without a future, the arguments taken as
  /// `submit(f, args...)` takes them; up to four arguments.
  template <class F, class A1>
  void post(F&& f, A1&& a1, std::source_location where = std::source_location::current()) {
    post_at(where, std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  void post(F&& f, A1&& a1, A2&& a2, std::source_location where = std::source_location::current()) {
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

 protected:
  /// For detail::tuned_thread_pool (tests and benchmarks) only.
  thread_pool(thread_pool_options options, detail::pool_tuning tuning);

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

  friend detail::pool_core& detail::core_of(thread_pool& pool) noexcept;
  std::unique_ptr<detail::pool_core> core_;
};

}  // namespace ctxpool

// co_spawn on the pool starts a new task; the overloads that make it so must
// be seen wherever the pool is.
#include <ctxpool/asio/co_spawn.hpp>
