// Asio glue for the context's cancellation: operations started inside a
// cancelled or expired context end with `operation_aborted`.
//
// `ctxpool::bind_cancellation(token)` adapts any Asio completion token (a
// handler, `use_awaitable`, `use_future`, `detached`) so that the operation
// it starts is cancelled, through Asio's per-operation cancellation, when the
// cancellation carried by the context current at the call is cancelled or
// its deadline passes (see <ctxpool/cancellation.hpp>):
//
//     ctxpool::cancellation_source request{2s};        // a deadline
//     ctxpool::cancellation_scope scope{request};
//     co_await timer.async_wait(ctxpool::bind_cancellation(asio::use_awaitable));
//     socket.async_read_some(buffer, ctxpool::bind_cancellation(handler));
//
// Bound to `co_spawn`'s token, it cancels a whole coroutine: Asio connects
// the coroutine's cancellation state to the token's slot, so the operation
// it awaits ends with `operation_aborted`, and every later `co_await` of an
// asynchronous operation throws it (Asio's `throw_if_cancelled`, on by
// default):
//
//     asio::co_spawn(asio::make_strand(pool), handle(request),
//                    ctxpool::bind_cancellation(asio::detached));
//
// Spawn such a coroutine on a strand (or another executor that runs one
// thing at a time): Asio delivers the cancellation to the coroutine through
// its executor, and on the bare pool that could run beside one of its steps.
//
// An operation started inside a context that is already cancelled ends at
// once with `operation_aborted`. Where no cancellation is carried the token
// is used unchanged, at no cost.
//
// @par Thread safety
// The cancellation may come from any thread: the signal is emitted under a
// lock that the operation's completion also takes, so it never reaches an
// operation that has completed (whose I/O object may be gone).
//
// @par Lifetime
// The link between the cancellation and the operation lives as long as the
// operation's handler; it keeps the cancellation's state alive, not the
// reverse.
#pragma once

#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>

#include <ctxpool/cancellation.hpp>

namespace ctxpool {

/// A completion token whose operation is cancelled with `cancellation`
/// (what `bind_cancellation` returns).
template <class CompletionToken>
struct cancellation_bound_token {
  cancellation_token cancellation;
  CompletionToken token;
};

/// Adapts `token` so that its operation is cancelled when the cancellation
/// carried by the current context is (explicitly or by its deadline).
template <class CompletionToken>
[[nodiscard]] cancellation_bound_token<std::decay_t<CompletionToken>> bind_cancellation(
    CompletionToken&& token) {
  return {current_cancellation(), std::forward<CompletionToken>(token)};
}

/// Adapts `token` so that its operation is cancelled with `cancellation`.
template <class CompletionToken>
[[nodiscard]] cancellation_bound_token<std::decay_t<CompletionToken>> bind_cancellation(
    cancellation_token cancellation, CompletionToken&& token) {
  return {std::move(cancellation), std::forward<CompletionToken>(token)};
}

namespace detail {

/// One operation's link to a cancellation: the Asio signal whose slot the
/// operation's handler carries, and the callback that emits it.
class cancellation_link {
 public:
  explicit cancellation_link(cancellation_token cancellation) noexcept
      : cancellation_(std::move(cancellation)) {}
  cancellation_link(const cancellation_link&) = delete;
  cancellation_link& operator=(const cancellation_link&) = delete;

  [[nodiscard]] boost::asio::cancellation_slot slot() noexcept { return signal_.slot(); }

  /// Registers the callback; called once the operation has started, so that
  /// its cancellation handler is in the slot (an already cancelled
  /// cancellation emits at once, here).
  void arm() {
    registration_ = cancellation_.on_cancel([this] { emit(); });
  }

  /// The operation completed: from now on nothing is emitted.
  void finished() noexcept {
    std::lock_guard lock(mutex_);
    done_ = true;
  }

 private:
  void emit() noexcept {
    std::lock_guard lock(mutex_);
    if (done_) return;
    done_ = true;  // once is enough; Asio's handlers are not reentrant
    signal_.emit(boost::asio::cancellation_type::terminal);
  }

  cancellation_token cancellation_;
  std::mutex mutex_;
  bool done_ = false;
  boost::asio::cancellation_signal signal_;
  cancellation_callback registration_;  // last: unregistered before the signal goes
};

/// The operation's handler with its link: marks the link finished before
/// the handler runs. Every associated characteristic but the cancellation
/// slot (added on top by bind_cancellation_slot) is the handler's own.
template <class Handler>
class cancellation_link_handler {
 public:
  template <class H>
  cancellation_link_handler(H&& handler, std::shared_ptr<cancellation_link> link)
      : handler_(std::forward<H>(handler)), link_(std::move(link)) {}

  template <class... Args>
  void operator()(Args&&... args) {
    link_->finished();
    std::move(handler_)(std::forward<Args>(args)...);
  }

  Handler handler_;

 private:
  std::shared_ptr<cancellation_link> link_;
};

/// Wraps an initiation so that the handler it receives carries the link.
template <class Initiation>
class cancellation_initiation {
 public:
  template <class I>
  cancellation_initiation(I&& initiation, cancellation_token cancellation)
      : initiation_(std::forward<I>(initiation)), cancellation_(std::move(cancellation)) {}

  template <class Handler, class... Args>
  void operator()(Handler&& handler, Args&&... args) {
    if (!cancellation_.can_be_cancelled()) {
      std::move(initiation_)(std::forward<Handler>(handler), std::forward<Args>(args)...);
      return;
    }
    auto link = std::make_shared<cancellation_link>(std::move(cancellation_));
    boost::asio::cancellation_slot slot = link->slot();
    std::move(initiation_)(
        boost::asio::bind_cancellation_slot(slot, cancellation_link_handler<std::decay_t<Handler>>(
                                                      std::forward<Handler>(handler), link)),
        std::forward<Args>(args)...);
    link->arm();
  }

 private:
  Initiation initiation_;
  cancellation_token cancellation_;
};

}  // namespace detail
}  // namespace ctxpool

namespace boost::asio {

/// The adapter's completion: the wrapped token's, with the link added to the
/// handler at initiation.
template <class CompletionToken, class... Signatures>
struct async_result<ctxpool::cancellation_bound_token<CompletionToken>, Signatures...> {
  template <class Initiation, class RawToken, class... Args>
  static auto initiate(Initiation&& initiation, RawToken&& token, Args&&... args) {
    return async_initiate<CompletionToken, Signatures...>(
        ctxpool::detail::cancellation_initiation<std::decay_t<Initiation>>(
            std::forward<Initiation>(initiation), token.cancellation),
        token.token, std::forward<Args>(args)...);
  }
};

template <template <class, class> class Associator, class Handler, class DefaultCandidate>
struct associator<Associator, ctxpool::detail::cancellation_link_handler<Handler>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      const ctxpool::detail::cancellation_link_handler<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler_);
  }
  static auto get(const ctxpool::detail::cancellation_link_handler<Handler>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler_, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler_, c);
  }
};

}  // namespace boost::asio
