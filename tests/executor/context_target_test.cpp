// Running in a given context (asyncio's `context=`): bind_context(ctx, handler)
// and coroutines spawned with in_context(ctx, executor). Ported from the
// shape of CPython's test_context.py (run, reentry) and asyncio's
// create_task(coro, context=ctx) / call_soon(cb, context=ctx) tests.
#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <typeinfo>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

ctxpool::context_var<std::string> name{"name"};
ctxpool::context_var<int> counter{"counter", 0};

}  // namespace

TEST_CASE("bind_context(ctx, handler): the handler's sets are seen in ctx afterwards") {
  ctxpool::context ctx;
  asio::io_context foreign;  // not ctxpool's: the handler carries the context itself
  asio::post(foreign, ctxpool::bind_context(ctx, [] {
               name.set("from handler");
               counter.set(counter.get() + 1);
             }));
  asio::post(foreign, ctxpool::bind_context(ctx, [] { counter.set(counter.get() + 1); }));
  foreign.run();
  CHECK(ctx.get(name) == "from handler");
  CHECK(ctx.get(counter) == 2);
  CHECK_FALSE(ctx.entered());
  CHECK(name.get_or("unset") == "unset");  // the caller's own context is untouched
}

TEST_CASE("bind_context(ctx, handler) passes arguments and results, and sees ctx's values") {
  ctxpool::context ctx;
  ctx.run([] { name.set("in ctx"); });
  auto bound =
      ctxpool::bind_context(ctx, [](int a, int b) { return name.get() + std::to_string(a + b); });
  CHECK(bound(1, 2) == "in ctx3");
}

TEST_CASE("bind_context(ctx, handler) refuses to enter ctx while it is entered (run's rule)") {
  ctxpool::context ctx;
  auto bound = ctxpool::bind_context(ctx, [] {});
  // Reentry on the same thread, as CPython's ctx.run(ctx.run, ...).
  ctx.run([&] { CHECK_THROWS_AS(bound(), ctxpool::context_error); });
  // Concurrent entry from another thread.
  std::latch inside(1);
  std::latch release(1);
  std::thread holder([&] {
    ctxpool::bind_context(ctx, [&] {
      inside.count_down();
      release.wait();
    })();
  });
  inside.wait();
  CHECK_THROWS_AS(bound(), ctxpool::context_error);
  release.count_down();
  holder.join();
  CHECK_NOTHROW(bound());  // free again
}

TEST_CASE("bind_context(ctx, handler) keeps the handler's associated executor") {
  ctxpool::thread_pool pool{1};
  auto strand = asio::make_strand(pool);
  auto bound = ctxpool::bind_context(ctxpool::context{}, asio::bind_executor(strand, [] {}));
  CHECK(asio::get_associated_executor(bound) == strand);
}

TEST_CASE("a coroutine spawned into ctx runs every step inside it; ctx sees its sets afterwards") {
  for (std::size_t threads : {1, 2, 4}) {
    ctxpool::thread_pool pool{threads};
    ctxpool::context ctx;
    ctx.run([] { name.set("initial"); });
    auto done = asio::co_spawn(
        ctxpool::in_context(ctx, pool.get_executor()),
        [&ctx]() -> asio::awaitable<std::string> {
          std::string seen = name.get();
          auto tok = counter.set(1);
          asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
          co_await timer.async_wait(asio::use_awaitable);
          const bool still_in_ctx = ctx.entered() && counter.get() == 1;
          counter.reset(tok);  // steps share ctx's token identity
          name.set("set by coroutine");
          co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
          counter.set(41 + (still_in_ctx ? 1 : 0));
          co_return seen;
        },
        asio::use_future);
    CHECK(done.get() == "initial");
    pool.wait();
    CHECK(ctx.get(name) == "set by coroutine");
    CHECK(ctx.get(counter) == 42);
  }
}

TEST_CASE("two steps entering the same ctx at once: the second fails with context_error") {
  ctxpool::thread_pool pool{2};
  ctxpool::context ctx;
  std::promise<std::string> reported;
  std::atomic<bool> reported_once{false};
  pool.set_exception_handler([&](std::exception_ptr error, const ctxpool::task_info&) {
    try {
      std::rethrow_exception(error);
    } catch (const ctxpool::context_error&) {
      if (!reported_once.exchange(true)) reported.set_value("context_error");
    } catch (const std::exception& e) {
      if (!reported_once.exchange(true)) reported.set_value(e.what());
    }
  });
  std::promise<void> first_inside;
  std::future<std::string> verdict = reported.get_future();
  // Asio destroys a failed coroutine's frame through its executor, which
  // enters ctx once more; the first coroutine holds ctx until that is over,
  // or its own last step could be the one to find ctx entered.
  std::promise<void> second_destroyed;
  std::future<void> second_gone = second_destroyed.get_future();
  struct signal_on_destroy {
    std::promise<void>* done;
    ~signal_on_destroy() { done->set_value(); }
  };
  auto first = asio::co_spawn(
      ctxpool::in_context(ctx, pool.get_executor()),
      [&]() -> asio::awaitable<void> {
        first_inside.set_value();
        verdict.wait();  // holds ctx entered until the second coroutine has failed
        second_gone.wait();
        co_return;
      },
      asio::use_future);
  first_inside.get_future().wait();
  std::atomic<bool> second_ran{false};
  asio::co_spawn(
      ctxpool::in_context(ctx, pool.get_executor()),
      [&second_ran,
       guard = std::make_shared<signal_on_destroy>(&second_destroyed)]() -> asio::awaitable<void> {
        second_ran = true;
        co_return;
      },
      asio::detached);
  first.get();
  CHECK(verdict.get() == "context_error");
  CHECK_FALSE(second_ran);
}

TEST_CASE(
    "a coroutine spawned from inside a ctx-bound coroutine is a new task with a copy of ctx") {
  ctxpool::thread_pool pool{2};
  ctxpool::context ctx;
  auto result = asio::co_spawn(
      ctxpool::in_context(ctx, pool.get_executor()),
      []() -> asio::awaitable<std::string> {
        name.set("parent");
        auto ex = co_await asio::this_coro::executor;
        std::string child_saw = co_await asio::co_spawn(
            ex,
            []() -> asio::awaitable<std::string> {
              std::string seen = name.get();
              name.set("child");  // its own copy: ctx keeps "parent"
              co_return seen;
            },
            asio::use_awaitable);
        co_return child_saw + "/" + name.get();
      },
      asio::use_future);
  CHECK(result.get() == "parent/parent");
  pool.wait();
  CHECK(ctx.get(name) == "parent");
}

TEST_CASE(
    "a caller that saw an in_context coroutine finish may enter ctx or spawn into it at once") {
  // No pool.wait() between rounds: the future is ready only once the last
  // step has left ctx on its worker.
  ctxpool::thread_pool pool{4};
  ctxpool::context ctx;
  ctx.run([] { counter.set(0); });
  for (int round = 0; round < 20; ++round) {
    CAPTURE(round);
    auto done = asio::co_spawn(
        ctxpool::in_context(ctx, pool.get_executor()),
        []() -> asio::awaitable<int> {
          co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
          counter.set(counter.get() + 1);
          co_return counter.get();
        },
        asio::use_future);
    REQUIRE(done.get() == 2 * round + 1);
    // Entering on this thread right away: run's reentry rule must not fire.
    REQUIRE_NOTHROW(ctx.run([] { counter.set(counter.get() + 1); }));
  }
  CHECK(ctx.get(counter) == 40);
}

TEST_CASE("an in_context coroutine's callback completion runs after its last step left ctx") {
  ctxpool::thread_pool pool{2};
  ctxpool::context ctx;
  std::promise<bool> seen_entered;
  auto verdict = seen_entered.get_future();
  asio::co_spawn(
      ctxpool::in_context(ctx, pool.get_executor()), []() -> asio::awaitable<void> { co_return; },
      [&](std::exception_ptr) { seen_entered.set_value(ctx.entered()); });
  REQUIRE(verdict.wait_for(20s) == std::future_status::ready);
  CHECK_FALSE(verdict.get());
}
