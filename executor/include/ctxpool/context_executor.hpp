// context_executor and in_context: every step of a coroutine (or every
// function) run inside one given context itself, through another executor
// (asyncio's `create_task(coro, context=ctx)`).
//
// @par Thread safety
// A context_executor may be copied and used from any thread. Two of them for
// one context (two `in_context` calls), or one and `ctx.run` elsewhere,
// overlap: a step that finds the context entered fails with `context_error`.
//
// @par Lifetime
// The executor holds `ctx` (a handle) and the inner executor; the inner
// executor's own rules apply (a pool's must not outlive the pool).
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include <boost/asio/associator.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>
#include <boost/asio/strand.hpp>

#include <ctxpool/context.hpp>

namespace ctxpool {
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
  after_leave_scope() noexcept : outer_(std::exchange(innermost(), this)) {}
  after_leave_scope(const after_leave_scope&) = delete;
  after_leave_scope& operator=(const after_leave_scope&) = delete;
  ~after_leave_scope() {
    if (innermost() == this) innermost() = outer_;
    // Reached only when run() could not: drop what was deferred.
    while (deferred_ != nullptr) delete std::exchange(deferred_, deferred_->next);
  }

  /// The innermost scope of the calling thread, or null.
  [[nodiscard]] static after_leave_scope* current() noexcept { return innermost(); }

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
    innermost() = outer_;
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
  /// `current_`, reached as CTXPOOL_TLS_ACCESSOR says.
  CTXPOOL_TLS_ACCESSOR static after_leave_scope*& innermost() noexcept {
    CTXPOOL_TLS_FENCE();
    return current_;
  }
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
  context_executor(context ctx,
                   Executor inner) noexcept(std::is_nothrow_move_constructible_v<Executor>)
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

namespace boost::asio {

/// Forwards every associated characteristic (executor, allocator,
/// cancellation slot, ...) of a coroutine completion deferred past its
/// context's leaving to the wrapped handler.
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
