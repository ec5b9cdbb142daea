// bind_context: a completion handler that runs in a context chosen when it
// was bound.
//
// `bind_context(handler)` captures the current context now and runs the
// handler in a fresh continuation of it, so a handler that completes on an
// executor that is not ctxpool's (a foreign io_context, say) still sees its
// initiator's values and may reset its tokens. `bind_context(ctx, handler)`
// runs the handler inside `ctx` itself, as `ctx.run` would (asyncio's
// `context=`). Asio sees the wrapped handler's associated executor,
// allocator and cancellation slot. Needs no pool: it works with any executor.
//
// @par Thread safety
// A bound handler may be moved to and called on any thread; calling a
// `bind_context(ctx, ...)` handler while `ctx` is entered, on any thread,
// throws `context_error`.
//
// @par Lifetime
// The handler holds the snapshot (or `ctx`) it was bound to, and with it the
// values it sees, until it is destroyed.
#pragma once

#include <functional>
#include <type_traits>
#include <utility>

#include <boost/asio/associator.hpp>

#include <ctxpool/context.hpp>
#include <ctxpool/detail/snapshot.hpp>

namespace ctxpool {
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
    return binding_.invoke(
        [&]() -> decltype(auto) { return std::invoke(handler_, std::forward<Args>(args)...); });
  }
  template <class... Args>
  decltype(auto) operator()(Args&&... args) const& {
    return binding_.invoke(
        [&]() -> decltype(auto) { return std::invoke(handler_, std::forward<Args>(args)...); });
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
      std::forward<Handler>(handler),
      detail::continue_snapshot{detail::captured_context::capture()});
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

}  // namespace ctxpool

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

}  // namespace boost::asio
