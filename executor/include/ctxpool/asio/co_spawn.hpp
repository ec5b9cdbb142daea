// asio::co_spawn on a ctxpool pool: each spawned coroutine is a new task.
//
// A coroutine keeps one context for its whole life: its steps continue one
// another, so a token set in one step can be reset in a later one. A
// coroutine *spawned* from another is a new task, as `submit` is and as
// asyncio's `create_task` is: it sees a snapshot of its spawner's values, but
// has a token identity (lineage) of its own, so neither can reset the other's
// tokens. Asio's co_spawn has no hook for that, so these overloads, more
// specialised than Asio's, catch co_spawn on the pool, a strand of it, an
// any_io_executor holding either, and the pool itself, and start the
// coroutine through `as_new_task`, which gives the first step's private
// context box a new lineage before any user code runs. Every later step
// continues that lineage. Other executors take Asio's path unchanged.
//
// Self-contained, and included by <ctxpool/thread_pool.hpp>, so that every
// co_spawn on the pool sees these overloads.
//
// @par Thread safety
// As Asio's co_spawn.
#pragma once

#include <boost/asio/co_spawn.hpp>

#include <ctxpool/asio/strand.hpp>
#include <ctxpool/context_executor.hpp>
#include <ctxpool/detail/state.hpp>
#include <ctxpool/pool_executor.hpp>
#include <ctxpool/thread_pool.hpp>

#if defined(BOOST_ASIO_HAS_CO_AWAIT)

#include <exception>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>

namespace ctxpool::detail {

/// Gives the running coroutine step's context box a lineage of its own.
/// The box is the step's private one (every pool task and continuation runs
/// in a fresh box), so nothing else sees the change.
inline void begin_new_task_identity() noexcept {
  if (context_box* box = this_thread_state().current; box != nullptr) box->lineage = new_lineage();
}

/// Runs `a` as a new task: a new lineage first, then `a` in the same step.
template <class T, class Executor>
boost::asio::awaitable<T, Executor> as_new_task(boost::asio::awaitable<T, Executor> a) {
  begin_new_task_identity();
  if constexpr (std::is_void_v<T>) {
    co_await std::move(a);
  } else {
    co_return co_await std::move(a);
  }
}

/// Where a coroutine spawned on `ex` runs, and whether as a new ctxpool task:
/// yes on the pool or a strand of it; on the pool, with a copy of the context,
/// for an executor bound to one context (in_context), as asyncio's
/// create_task copies; otherwise Asio's way.
struct spawn_target {
  boost::asio::any_io_executor executor;
  bool new_task;
};
inline spawn_target resolve_spawn_target(const boost::asio::any_io_executor& ex) {
  if (ex.target<pool_executor>() != nullptr ||
      ex.target<boost::asio::strand<pool_executor>>() != nullptr) {
    return {ex, true};
  }
  if (const auto* bound = ex.target<context_executor<boost::asio::strand<pool_executor>>>()) {
    return {bound->inner_executor().get_inner_executor(), true};
  }
  return {ex, false};
}

/// Asio's co_spawn body, with the coroutine started as a new task or not.
template <class AwaitableExecutor, class T, class Executor, class CompletionToken>
auto spawn_awaitable(const Executor& ex, boost::asio::awaitable<T, AwaitableExecutor> a,
                     CompletionToken&& token, bool new_task) {
  using signature = typename boost::asio::detail::awaitable_signature<
      boost::asio::awaitable<T, AwaitableExecutor>>::type;
  return boost::asio::async_initiate<CompletionToken, signature>(
      boost::asio::detail::initiate_co_spawn<AwaitableExecutor>(AwaitableExecutor(ex)), token,
      boost::asio::detail::awaitable_as_function<T, AwaitableExecutor>(
          new_task ? as_new_task(std::move(a)) : std::move(a)));
}

/// The same for a function returning the awaitable.
template <class Executor, class F, class CompletionToken>
auto spawn_function(const Executor& ex, F&& f, CompletionToken&& token, bool new_task) {
  using awaitable_type = std::invoke_result_t<std::decay_t<F>&>;
  using signature = typename boost::asio::detail::awaitable_signature<awaitable_type>::type;
  return boost::asio::async_initiate<CompletionToken, signature>(
      boost::asio::detail::initiate_co_spawn<typename awaitable_type::executor_type>(ex), token,
      [f = std::forward<F>(f), new_task]() mutable -> awaitable_type {
        return new_task ? as_new_task(f()) : f();
      });
}

/// co_spawn into `ctx` itself (in_context): Asio's co_spawn, with the
/// completion handler delivered only after the last step has left `ctx`
/// (completion_after_leave), so that the caller may enter `ctx` at once.
template <class AwaitableExecutor, class T, class Executor, class CompletionToken>
auto spawn_in_context(const Executor& ex, boost::asio::awaitable<T, AwaitableExecutor> a,
                      CompletionToken&& token) {
  using signature = typename boost::asio::detail::awaitable_signature<
      boost::asio::awaitable<T, AwaitableExecutor>>::type;
  return boost::asio::async_initiate<CompletionToken, signature>(
      [ex](auto handler, boost::asio::awaitable<T, AwaitableExecutor> coroutine) {
        boost::asio::detail::initiate_co_spawn<AwaitableExecutor>(AwaitableExecutor(ex))(
            completion_after_leave<decltype(handler)>(std::move(handler)),
            boost::asio::detail::awaitable_as_function<T, AwaitableExecutor>(std::move(coroutine)));
      },
      token, std::move(a));
}

/// The same for a function returning the awaitable.
template <class Executor, class F, class CompletionToken>
auto spawn_function_in_context(const Executor& ex, F&& f, CompletionToken&& token) {
  using awaitable_type = std::invoke_result_t<std::decay_t<F>&>;
  using signature = typename boost::asio::detail::awaitable_signature<awaitable_type>::type;
  return boost::asio::async_initiate<CompletionToken, signature>(
      [ex](auto handler, std::decay_t<F> function) {
        boost::asio::detail::initiate_co_spawn<typename awaitable_type::executor_type>(
            typename awaitable_type::executor_type(ex))(
            completion_after_leave<decltype(handler)>(std::move(handler)), std::move(function));
      },
      token, std::forward<F>(f));
}

template <class T>
inline constexpr bool is_awaitable_v = false;
template <class T, class E>
inline constexpr bool is_awaitable_v<boost::asio::awaitable<T, E>> = true;

/// A callable (not itself an awaitable) that returns an awaitable.
template <class F>
concept spawnable_function = !is_awaitable_v<std::decay_t<F>> && requires(std::decay_t<F>& f) {
  requires is_awaitable_v<decltype(f())>;
};

}  // namespace ctxpool::detail

namespace boost::asio {

// Each overload names its first parameter's type exactly, which makes it more
// specialised than Asio's templates, so overload resolution prefers it.

/// co_spawn on the pool's executor: a new task (see above).
template <class T, class AwaitableExecutor, class CompletionToken>
  requires std::is_convertible_v<ctxpool::pool_executor, AwaitableExecutor>
auto co_spawn(const ctxpool::pool_executor& ex, awaitable<T, AwaitableExecutor> a,
              CompletionToken&& token) {
  return ctxpool::detail::spawn_awaitable(ex, std::move(a), std::forward<CompletionToken>(token),
                                          true);
}

/// co_spawn on a strand of the pool: a new task.
template <class T, class AwaitableExecutor, class CompletionToken>
  requires std::is_convertible_v<strand<ctxpool::pool_executor>, AwaitableExecutor>
auto co_spawn(const strand<ctxpool::pool_executor>& ex, awaitable<T, AwaitableExecutor> a,
              CompletionToken&& token) {
  return ctxpool::detail::spawn_awaitable(ex, std::move(a), std::forward<CompletionToken>(token),
                                          true);
}

/// co_spawn on an any_io_executor (what `co_await this_coro::executor` gives a
/// coroutine): a new task when it runs on a ctxpool pool, Asio's own
/// behaviour otherwise.
template <class T, class AwaitableExecutor, class CompletionToken>
  requires std::is_convertible_v<any_io_executor, AwaitableExecutor>
auto co_spawn(const any_io_executor& ex, awaitable<T, AwaitableExecutor> a,
              CompletionToken&& token) {
  auto target = ctxpool::detail::resolve_spawn_target(ex);
  return ctxpool::detail::spawn_awaitable(target.executor, std::move(a),
                                          std::forward<CompletionToken>(token), target.new_task);
}

/// co_spawn on the pool itself (the execution context): a new task.
template <class T, class AwaitableExecutor, class CompletionToken>
  requires std::is_convertible_v<ctxpool::pool_executor, AwaitableExecutor>
auto co_spawn(ctxpool::thread_pool& pool, awaitable<T, AwaitableExecutor> a,
              CompletionToken&& token) {
  return ctxpool::detail::spawn_awaitable(pool.get_executor(), std::move(a),
                                          std::forward<CompletionToken>(token), true);
}

/// co_spawn into a context itself (`in_context`): the completion is seen
/// only after the coroutine's last step has left the context.
template <class Executor, class T, class AwaitableExecutor, class CompletionToken>
  requires std::is_convertible_v<ctxpool::context_executor<Executor>, AwaitableExecutor>
auto co_spawn(const ctxpool::context_executor<Executor>& ex, awaitable<T, AwaitableExecutor> a,
              CompletionToken&& token) {
  return ctxpool::detail::spawn_in_context(ex, std::move(a), std::forward<CompletionToken>(token));
}

// Asio overloads awaitable<void> separately; so must we, or the calls would
// be ambiguous (Asio's more specialised in the awaitable, ours in the executor).

template <class AwaitableExecutor, class CompletionToken>
  requires std::is_convertible_v<ctxpool::pool_executor, AwaitableExecutor>
auto co_spawn(const ctxpool::pool_executor& ex, awaitable<void, AwaitableExecutor> a,
              CompletionToken&& token) {
  return ctxpool::detail::spawn_awaitable(ex, std::move(a), std::forward<CompletionToken>(token),
                                          true);
}

template <class AwaitableExecutor, class CompletionToken>
  requires std::is_convertible_v<strand<ctxpool::pool_executor>, AwaitableExecutor>
auto co_spawn(const strand<ctxpool::pool_executor>& ex, awaitable<void, AwaitableExecutor> a,
              CompletionToken&& token) {
  return ctxpool::detail::spawn_awaitable(ex, std::move(a), std::forward<CompletionToken>(token),
                                          true);
}

template <class AwaitableExecutor, class CompletionToken>
  requires std::is_convertible_v<any_io_executor, AwaitableExecutor>
auto co_spawn(const any_io_executor& ex, awaitable<void, AwaitableExecutor> a,
              CompletionToken&& token) {
  auto target = ctxpool::detail::resolve_spawn_target(ex);
  return ctxpool::detail::spawn_awaitable(target.executor, std::move(a),
                                          std::forward<CompletionToken>(token), target.new_task);
}

template <class AwaitableExecutor, class CompletionToken>
  requires std::is_convertible_v<ctxpool::pool_executor, AwaitableExecutor>
auto co_spawn(ctxpool::thread_pool& pool, awaitable<void, AwaitableExecutor> a,
              CompletionToken&& token) {
  return ctxpool::detail::spawn_awaitable(pool.get_executor(), std::move(a),
                                          std::forward<CompletionToken>(token), true);
}

template <class Executor, class AwaitableExecutor, class CompletionToken>
  requires std::is_convertible_v<ctxpool::context_executor<Executor>, AwaitableExecutor>
auto co_spawn(const ctxpool::context_executor<Executor>& ex, awaitable<void, AwaitableExecutor> a,
              CompletionToken&& token) {
  return ctxpool::detail::spawn_in_context(ex, std::move(a), std::forward<CompletionToken>(token));
}

/// co_spawn of a function returning an awaitable, on the pool's executor: a
/// new task. (The function forms below mirror the awaitable forms above.)
template <class F, class CompletionToken>
  requires ctxpool::detail::spawnable_function<F>
auto co_spawn(const ctxpool::pool_executor& ex, F&& f, CompletionToken&& token) {
  return ctxpool::detail::spawn_function(ex, std::forward<F>(f),
                                         std::forward<CompletionToken>(token), true);
}

template <class F, class CompletionToken>
  requires ctxpool::detail::spawnable_function<F>
auto co_spawn(const strand<ctxpool::pool_executor>& ex, F&& f, CompletionToken&& token) {
  return ctxpool::detail::spawn_function(ex, std::forward<F>(f),
                                         std::forward<CompletionToken>(token), true);
}

template <class F, class CompletionToken>
  requires ctxpool::detail::spawnable_function<F>
auto co_spawn(const any_io_executor& ex, F&& f, CompletionToken&& token) {
  auto target = ctxpool::detail::resolve_spawn_target(ex);
  return ctxpool::detail::spawn_function(target.executor, std::forward<F>(f),
                                         std::forward<CompletionToken>(token), target.new_task);
}

template <class F, class CompletionToken>
  requires ctxpool::detail::spawnable_function<F>
auto co_spawn(ctxpool::thread_pool& pool, F&& f, CompletionToken&& token) {
  return ctxpool::detail::spawn_function(pool.get_executor(), std::forward<F>(f),
                                         std::forward<CompletionToken>(token), true);
}

template <class Executor, class F, class CompletionToken>
  requires ctxpool::detail::spawnable_function<F>
auto co_spawn(const ctxpool::context_executor<Executor>& ex, F&& f, CompletionToken&& token) {
  return ctxpool::detail::spawn_function_in_context(ex, std::forward<F>(f),
                                                    std::forward<CompletionToken>(token));
}

}  // namespace boost::asio

#endif  // BOOST_ASIO_HAS_CO_AWAIT
