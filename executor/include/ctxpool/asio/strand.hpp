// asio::strand<ctxpool::pool_executor>: a strand of a ctxpool pool that keeps
// each handler's context.
//
// Asio's strand queues handlers itself and runs a batch of them inside one
// call of the inner executor, so the inner executor alone cannot give each
// handler its own context: all would run in the context of the first. This
// specialisation binds each handler to its context when it is handed to the
// strand (a tracked strand's captured one, else the caller's) and runs it as
// a nested pool task; Asio's own strand service does the serialising.
//
// Self-contained, and included by <ctxpool/pool_executor.hpp>, so that no
// translation unit makes a strand of the pool without it.
//
// @par Thread safety
// As Asio's strands: copies may be used from any thread; the handlers of one
// strand never run concurrently.
//
// @par Lifetime
// A strand must not outlive its pool.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include <boost/asio/detail/strand_executor_service.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>
#include <boost/asio/strand.hpp>

#include <ctxpool/detail/snapshot.hpp>
#include <ctxpool/hooks.hpp>
#include <ctxpool/pool_executor.hpp>

namespace ctxpool::detail {

/// One handler given to a strand, with the context it must run in.
template <class F>
class strand_task {
 public:
  template <class G>
  strand_task(pool_core& core, captured_context snapshot, G&& f)
      : core_(&core), snapshot_(std::move(snapshot)), f_(std::forward<G>(f)) {}

  void operator()() {
    core_->run_inline(std::move(f_), std::move(snapshot_), /*continuation=*/true,
                      task_info{core_->next_task_id(), {}, "asio strand handler"});
  }

 private:
  pool_core* core_;
  captured_context snapshot_;
  F f_;
};

}  // namespace ctxpool::detail

namespace boost::asio {

/// A strand over a ctxpool pool: handlers run one at a time, each in the
/// context that was current when it was handed to the strand (or the context
/// a tracked strand captured), with its own slot wipe, as a pool task.
///
/// It has the data members of Asio's own strand (`executor_`, `impl_`, public
/// there too), so that it converts to `strand<any_io_executor>` by
/// construction and assignment as a strand over an io_context does; the
/// converted strand shares the queue, so both stay serialised with each
/// other. (Handlers given to the converted strand run through Asio's generic
/// code path: serialised, in the context of the pool task that runs the
/// strand's queue rather than each in its own.)
template <>
class strand<ctxpool::pool_executor> {
  using pool_executor = ctxpool::pool_executor;

 public:
  using inner_executor_type = pool_executor;

  /// A new strand (a new queue) on the pool of `executor`, with its properties.
  explicit strand(const pool_executor& executor)
      : executor_(executor),
        impl_(use_service<detail::strand_executor_service>(executor.core().owner())
                  .create_implementation()) {}

  strand(const strand&) noexcept = default;
  strand(strand&&) noexcept = default;
  strand& operator=(const strand&) noexcept = default;
  strand& operator=(strand&&) noexcept = default;
  ~strand() = default;

  /// The pool's executor this strand runs on, with the strand's properties.
  [[nodiscard]] inner_executor_type get_inner_executor() const noexcept { return executor_; }

  /// Every property is answered as the pool's executor with the strand's
  /// properties answers it (a tracked strand says tracked).
  template <class P>
  auto query(const P& p) const noexcept -> decltype(std::declval<const pool_executor&>().query(p)) {
    return executor_.query(p);
  }

  /// The same strand (queue) with a property changed, as the pool's executor
  /// changes it: outstanding_work.tracked counts as work and captures the
  /// current context, blocking and relationship as documented there.
  template <class P>
    requires requires(const pool_executor& e, const P& p) { e.require(p); }
  [[nodiscard]] strand require(const P& p) const {
    return strand(executor_.require(p), impl_);
  }

  /// Queues `f` on the strand, bound to its context now.
  template <class F>
  void execute(F&& f) const {
    ctxpool::detail::pool_core& core = executor_.core();
    ctxpool::detail::captured_context snapshot = executor_.context_to_run_in();
    // Asio's strand machinery does the serialising; the queue runs as a pool
    // task through an executor with the strand's blocking and relationship.
    pool_executor runner(
        &core, {},
        static_cast<std::uint8_t>(executor_.bits() &
                                  (pool_executor::never_bit | pool_executor::continuation_bit)));
    detail::strand_executor_service::execute(impl_, runner,
                                             ctxpool::detail::strand_task<std::decay_t<F>>(
                                                 core, std::move(snapshot), std::forward<F>(f)));
  }

  /// Whether the calling thread is running a handler of this strand.
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return detail::strand_executor_service::running_in_this_thread(impl_);
  }

  /// The same strand (queue), as Asio's strands compare.
  friend bool operator==(const strand& a, const strand& b) noexcept { return a.impl_ == b.impl_; }
  friend bool operator!=(const strand& a, const strand& b) noexcept { return !(a == b); }

  using implementation_type = detail::strand_executor_service::implementation_type;

  // Public under Asio's names: strand<OtherExecutor>'s converting constructor
  // and assignment read them. Treat them as private.
  pool_executor executor_;    ///< the pool, the properties, a tracked strand's context
  implementation_type impl_;  ///< the queue, shared by copies and converted strands

 private:
  strand(pool_executor executor, implementation_type impl) noexcept
      : executor_(std::move(executor)), impl_(std::move(impl)) {}
};

}  // namespace boost::asio
