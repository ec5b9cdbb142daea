// Cancellation and deadlines carried by the context (Go's context.Context,
// .NET's CancellationToken, asyncio's timeout).
//
// A context can carry a *cancellation*: a flag that some owner may raise, and
// an optional deadline. Like any context value it follows the work: a task
// submitted, a coroutine spawned, a task_group child started inside a
// cancellation carries it too, so cancelling once reaches everything that was
// started on its behalf.
//
//     ctxpool::cancellation_source request{500ms};   // a deadline: now + 500 ms
//     ctxpool::cancellation_scope in_request{request};
//     pool.submit([] {
//       for (auto& item : work) {
//         ctxpool::this_task::throw_if_cancelled();  // cancelled_error once it is over
//         process(item);
//       }
//     });
//     request.cancel();   // or: the deadline passes
//
// A `cancellation_source` made where another cancellation is current is its
// child: cancelling the parent cancels it, and its deadline is the earlier of
// its own and its parent's (a child may only tighten a deadline). Code asks
// `this_task::cancelled()` or calls `this_task::throw_if_cancelled()`;
// `cancellation_token::on_cancel` runs a callback when the cancellation
// happens, which is how the Asio glue (<ctxpool/asio/cancellation.hpp>) ends
// timer waits and socket reads with `operation_aborted`. A deadline counts as
// a cancellation from the moment it passes: `cancelled()` reads the clock, and
// a deadline with callbacks registered is watched by one shared timer thread
// that runs them when it passes.
//
// @par Thread safety
// Every member function of `cancellation_source` and `cancellation_token` may
// be called concurrently from any thread. `cancel()` runs the callbacks
// registered on this cancellation and its children on the calling thread
// (the deadline's, on the timer thread), before it returns; a callback must
// therefore not block on work that waits for the canceller. Destroying a
// `cancellation_callback` waits for its callback if it is running on another
// thread (std::stop_callback's rule).
//
// @par Lifetime
// A source, a token and the contexts that carry it share one state: it lives
// as long as any of them. Destroying the source does not cancel (.NET and
// std::stop_source alike). A child keeps its parent's state alive.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>

#include <ctxpool/context.hpp>

namespace ctxpool {

/// Thrown by `throw_if_cancelled` when the current cancellation has been
/// cancelled or its deadline has passed (asyncio's CancelledError).
class cancelled_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Why a cancellation is cancelled.
enum class cancel_reason {
  none,       ///< not cancelled
  requested,  ///< `cancel()` on it or on an ancestor
  deadline,   ///< its deadline (its own or an ancestor's) has passed
};

/// The clock deadlines are measured on.
using deadline_clock = std::chrono::steady_clock;

namespace detail {
struct cancel_state;
struct cancellation_access;
}  // namespace detail

/// A registered `on_cancel` callback; destroying it unregisters it.
class cancellation_callback {
 public:
  cancellation_callback() noexcept;
  cancellation_callback(cancellation_callback&&) noexcept;
  cancellation_callback& operator=(cancellation_callback&&) noexcept;
  /// Unregisters; waits if the callback is running on another thread.
  ~cancellation_callback();

 private:
  friend class cancellation_token;
  struct registration;
  std::unique_ptr<registration> registration_;
};

/// A read-only view of one cancellation: what the current context carries
/// (`this_task::cancellation()`) or what a source controls (`token()`).
/// An empty token (nothing carried) is never cancelled.
class cancellation_token {
 public:
  cancellation_token() noexcept = default;

  /// Whether it was cancelled (on it or an ancestor) or its deadline passed.
  [[nodiscard]] bool cancelled() const noexcept;
  /// Why it is cancelled; `none` while it is not.
  [[nodiscard]] cancel_reason reason() const noexcept;
  /// The deadline in force (its own or an inherited one), if any.
  [[nodiscard]] std::optional<deadline_clock::time_point> deadline() const noexcept;
  /// Throws `cancelled_error` if `cancelled()`, saying why.
  void throw_if_cancelled() const;
  /// Whether this token refers to a cancellation at all.
  [[nodiscard]] bool can_be_cancelled() const noexcept { return state_ != nullptr; }

  /// Runs `callback` once when this cancellation is cancelled or its
  /// deadline passes: at once on this thread if it already is, else on the
  /// thread that cancels (the deadline watcher's for a deadline). Unregistered
  /// when the returned object is destroyed. Nothing happens for an empty token.
  [[nodiscard]] cancellation_callback on_cancel(std::function<void()> callback) const;

  /// Identity: the same cancellation.
  friend bool operator==(const cancellation_token& a, const cancellation_token& b) noexcept {
    return a.state_ == b.state_;
  }

 private:
  friend class cancellation_source;
  friend cancellation_token current_cancellation() noexcept;
  explicit cancellation_token(std::shared_ptr<detail::cancel_state> state) noexcept
      : state_(std::move(state)) {}
  std::shared_ptr<detail::cancel_state> state_;
};

/// Owns one cancellation: a child of the one current where it is made.
class cancellation_source {
 public:
  /// A cancellation with no deadline of its own (it inherits the parent's).
  cancellation_source();
  /// One whose deadline is `deadline`, or the parent's if that is earlier.
  explicit cancellation_source(deadline_clock::time_point deadline);
  /// One whose deadline is `timeout` from now, or the parent's if earlier.
  explicit cancellation_source(deadline_clock::duration timeout);
  /// A child of `parent` (.NET's linked source) rather than of the current
  /// context's cancellation; with an empty `parent`, a root.
  explicit cancellation_source(const cancellation_token& parent);

  /// Cancels it and every cancellation made inside it (reason `requested`),
  /// running their callbacks. Idempotent; the first reason stays.
  void cancel() noexcept;
  /// Whether it is cancelled (see `cancellation_token::cancelled`).
  [[nodiscard]] bool cancelled() const noexcept { return token().cancelled(); }
  /// A view of this cancellation, e.g. to hand to code that only observes.
  [[nodiscard]] cancellation_token token() const noexcept { return cancellation_token(state_); }

  /// Calls `f(args...)` with this cancellation carried by the current
  /// context, then restores the previous one (also when `f` throws).
  template <class F, class... Args>
  std::invoke_result_t<F, Args...> run(F&& f, Args&&... args) const;

 private:
  friend class cancellation_scope;
  friend struct detail::cancellation_access;
  std::shared_ptr<detail::cancel_state> state_;
};

namespace detail {
/// The context variable that carries the current cancellation.
extern context_var<std::shared_ptr<cancel_state>> current_cancel_state;

/// The active overlay (detail/snapshot.hpp) if it applies to the current
/// context, without making its cancellation real; else null.
[[nodiscard]] const cancellation_overlay* applicable_overlay() noexcept;
/// The cancellation the current context itself carries, overlays aside.
[[nodiscard]] const cancel_state* carried_cancel_state() noexcept;

/// What the executor's task_group needs of a source: its shared state.
struct cancellation_access {
  static const std::shared_ptr<cancel_state>& state(const cancellation_source& source) noexcept {
    return source.state_;
  }
};
}  // namespace detail

/// Makes `source`'s cancellation the one the current context carries for the
/// enclosing block (RAII form of `cancellation_source::run`). Work started in
/// the block (tasks, coroutines, groups) carries it too. Destroy it in the
/// context it was made in, like `set_scope`.
class cancellation_scope {
 public:
  explicit cancellation_scope(const cancellation_source& source)
      : token_(detail::current_cancel_state.set(source.state_)) {}
  ~cancellation_scope() {
    try {
      detail::current_cancel_state.reset(token_);
    } catch (const token_error&) {
      CTXPOOL_ASSERT(false, "cancellation_scope destroyed outside the context it was created in");
    }
  }
  cancellation_scope(const cancellation_scope&) = delete;
  cancellation_scope& operator=(const cancellation_scope&) = delete;

 private:
  token<std::shared_ptr<detail::cancel_state>> token_;
};

template <class F, class... Args>
std::invoke_result_t<F, Args...> cancellation_source::run(F&& f, Args&&... args) const {
  cancellation_scope scope(*this);
  return std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
}

/// The cancellation the current context carries (empty if none).
[[nodiscard]] cancellation_token current_cancellation() noexcept;

/// Questions a task asks about the cancellation its context carries. They
/// take no reference count: cheap enough for the inner loop of a long task.
namespace this_task {
/// Whether the current context's cancellation is cancelled or past its deadline.
[[nodiscard]] bool cancelled() noexcept;
/// Throws `cancelled_error` if `cancelled()`, saying why.
void throw_if_cancelled();
/// The deadline the current context carries, if any.
[[nodiscard]] std::optional<deadline_clock::time_point> deadline() noexcept;
}  // namespace this_task

}  // namespace ctxpool
