// asio::strand<ctxpool::pool_executor>: a strand that keeps each handler's context.
//
// Asio's strand queues handlers itself and runs a batch of them inside one
// call of the inner executor, so the inner executor alone cannot give each
// handler its own context: all would run in the context of the first. This
// specialisation binds each handler to its context when it is handed to the
// strand (the executor's captured one, else the caller's), and runs it as a
// nested pool task, then lets Asio's own strand implementation do the
// serialising over the pool's executor (under a distinct type, `strand_inner`).
#pragma once

#include <type_traits>
#include <utility>

#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>
#include <boost/asio/strand.hpp>

namespace ctxpool::detail {

/// The pool's executor under a type of its own, so that Asio's primary strand
/// template implements the queue beneath the specialisation.
class strand_inner {
 public:
  explicit strand_inner(pool_executor executor) noexcept : executor_(std::move(executor)) {}

  template <class F>
  void execute(F&& f) const {
    executor_.execute(std::forward<F>(f));
  }
  template <class P>
  auto query(const P& p) const noexcept -> decltype(std::declval<const pool_executor&>().query(p)) {
    return executor_.query(p);
  }
  template <class P>
    requires requires(const pool_executor& e, const P& p) { e.require(p); }
  strand_inner require(const P& p) const {
    return strand_inner(executor_.require(p));
  }

  [[nodiscard]] const pool_executor& get() const noexcept { return executor_; }

  friend bool operator==(const strand_inner& a, const strand_inner& b) noexcept {
    return a.executor_ == b.executor_;
  }
  friend bool operator!=(const strand_inner& a, const strand_inner& b) noexcept {
    return !(a == b);
  }

 private:
  pool_executor executor_;
};

/// One handler given to a strand, with the context it must run in.
template <class F>
class strand_task {
 public:
  template <class G>
  strand_task(pool_core& core, captured_context snapshot, G&& f)
      : core_(&core), snapshot_(std::move(snapshot)), f_(std::forward<G>(f)) {}

  void operator()() {
    core_->run_inline(std::move(f_), std::move(snapshot_), /*continuation=*/true,
                      task_info{core_->next_task_id(), {}, {}});
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
template <>
class strand<ctxpool::pool_executor> {
  using impl_type = strand<ctxpool::detail::strand_inner>;

 public:
  using inner_executor_type = ctxpool::pool_executor;

  explicit strand(const ctxpool::pool_executor& executor)
      : impl_(ctxpool::detail::strand_inner(executor)) {}

  /// The pool's executor this strand runs on.
  [[nodiscard]] inner_executor_type get_inner_executor() const noexcept {
    return impl_.get_inner_executor().get();
  }

  template <class P>
  auto query(const P& p) const noexcept(noexcept(boost::asio::query(std::declval<const impl_type&>(), p)))
      -> decltype(boost::asio::query(std::declval<const impl_type&>(), p)) {
    return boost::asio::query(impl_, p);
  }
  template <class P>
    requires requires(const impl_type& impl, const P& p) { boost::asio::require(impl, p); }
  strand require(const P& p) const {
    return strand(boost::asio::require(impl_, p));
  }
  template <class P>
    requires requires(const impl_type& impl, const P& p) { boost::asio::prefer(impl, p); }
  strand prefer(const P& p) const {
    return strand(boost::asio::prefer(impl_, p));
  }

  /// Queues `f` on the strand, bound to its context now.
  template <class F>
  void execute(F&& f) const {
    const ctxpool::detail::strand_inner inner = impl_.get_inner_executor();
    const ctxpool::pool_executor& executor = inner.get();
    ctxpool::detail::pool_core& core = executor.core();
    ctxpool::detail::captured_context snapshot =
        executor.has_snapshot() ? executor.snapshot_
                                : (core.propagates() ? ctxpool::detail::captured_context::capture()
                                                     : ctxpool::detail::captured_context{});
    impl_.execute(
        ctxpool::detail::strand_task<std::decay_t<F>>(core, std::move(snapshot), std::forward<F>(f)));
  }

  /// Whether the calling thread is running a handler of this strand.
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return impl_.running_in_this_thread();
  }

  friend bool operator==(const strand& a, const strand& b) noexcept { return a.impl_ == b.impl_; }
  friend bool operator!=(const strand& a, const strand& b) noexcept { return a.impl_ != b.impl_; }

 private:
  explicit strand(impl_type impl) noexcept : impl_(std::move(impl)) {}
  template <class>
  friend class strand;

  impl_type impl_;
};

}  // namespace boost::asio
