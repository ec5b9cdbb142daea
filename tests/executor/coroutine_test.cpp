// Coroutines on the pool keep one context for their whole life, across every
// co_await: timers on the pool, posts, timers on a foreign io_context, and
// resumption on another worker.
#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include "support/manual_coroutine.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

ctxpool::context_var<std::string> request_id{"request_id"};
ctxpool::context_var<int> step{"step", 0};

asio::awaitable<void> sleep_on_pool(std::chrono::milliseconds d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

/// A separate io_context run by its own thread, as a library's I/O loop would be.
struct foreign_loop {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  std::thread thread{[this] { io.run(); }};
  ~foreign_loop() {
    work.reset();
    thread.join();
  }
};

}  // namespace

TEST_CASE("co_spawn: the coroutine sees the spawner's values and returns its result") {
  ctxpool::thread_pool pool{2};
  ctxpool::set_scope scope(request_id, "spawner");
  auto result = asio::co_spawn(
      pool.get_executor(), []() -> asio::awaitable<std::string> { co_return request_id.get(); },
      asio::use_future);
  CHECK(result.get() == "spawner");
}

TEST_CASE("co_spawn: an exception in the coroutine reaches the completion") {
  ctxpool::thread_pool pool{2};
  auto result = asio::co_spawn(
      pool.get_executor(),
      []() -> asio::awaitable<int> {
        co_await asio::post(asio::use_awaitable);
        throw std::runtime_error("coroutine failed");
      },
      asio::use_future);
  CHECK_THROWS_WITH_AS(result.get(), "coroutine failed", std::runtime_error);
}

TEST_CASE("a coroutine keeps the values it sets across co_await on pool timers and posts") {
  ctxpool::thread_pool pool{2};
  ctxpool::set_scope scope(request_id, "spawner");
  auto result = asio::co_spawn(
      pool.get_executor(),
      [&pool]() -> asio::awaitable<int> {
        int failures = 0;
        auto tok = request_id.set("inside");
        for (int i = 1; i <= 20; ++i) {
          step.set(i);
          if (i % 2 == 0) {
            co_await sleep_on_pool(1ms);
          } else {
            co_await asio::post(asio::use_awaitable);
          }
          if (!pool.running_in_this_thread()) ++failures;
          if (step.get() != i || request_id.get() != "inside") ++failures;
        }
        // The token from before all those suspensions still resets.
        request_id.reset(tok);
        if (request_id.get() != "spawner") ++failures;
        co_return failures;
      },
      asio::use_future);
  CHECK(result.get() == 0);
  CHECK(request_id.get() == "spawner");  // nothing leaked back
  CHECK(step.get() == 0);
}

TEST_CASE("a coroutine keeps its context when a foreign io_context completes its wait") {
  foreign_loop foreign;
  ctxpool::thread_pool pool{2};
  auto result = asio::co_spawn(
      pool.get_executor(),
      [&]() -> asio::awaitable<int> {
        int failures = 0;
        ctxpool::set_scope scope(request_id, "crossing");
        for (int i = 1; i <= 10; ++i) {
          step.set(i);
          asio::steady_timer timer(foreign.io, 1ms);
          co_await timer.async_wait(asio::use_awaitable);
          // The completion ran on the foreign thread and hopped back to the pool.
          if (!pool.running_in_this_thread()) ++failures;
          if (step.get() != i || request_id.get() != "crossing") ++failures;
        }
        co_return failures;
      },
      asio::use_future);
  CHECK(result.get() == 0);
}

TEST_CASE("a coroutine resumed on another worker keeps its context") {
  ctxpool::thread_pool pool{2};
  std::promise<std::thread::id> first_thread;
  std::promise<void> finished;
  auto report = asio::co_spawn(
      pool.get_executor(),
      [&]() -> asio::awaitable<std::pair<std::thread::id, std::string>> {
        ctxpool::set_scope scope(request_id, "migrating");
        first_thread.set_value(std::this_thread::get_id());
        co_await sleep_on_pool(5ms);
        auto seen = std::make_pair(std::this_thread::get_id(), request_id.get());
        finished.set_value();
        co_return seen;
      },
      asio::use_future);
  // Occupy the worker the coroutine started on until it has finished, so its
  // resumption has to run on the other worker.
  const std::thread::id start = first_thread.get_future().get();
  auto finished_future = finished.get_future().share();
  std::atomic<bool> pinned{false};
  // Pinned in time: the blocking task began on `start` before the coroutine
  // finished, so the coroutine was not running there and could not resume there.
  std::atomic<bool> pinned_in_time{false};
  while (!pinned) {
    pool.post([&, finished_future] {
      if (std::this_thread::get_id() == start && !pinned.exchange(true)) {
        pinned_in_time = finished_future.wait_for(0s) != std::future_status::ready;
        finished_future.wait();
      }
    });
    std::this_thread::yield();
    if (finished_future.wait_for(0s) == std::future_status::ready) break;
  }
  const auto [resumed_on, value] = report.get();
  CHECK(value == "migrating");
  pool.wait();  // pinned_in_time is written by the blocking task
  if (pinned_in_time) CHECK(resumed_on != start);
}

TEST_CASE("a coroutine spawned from inside a task and resumed elsewhere keeps its context") {
  // The spawning task runs the coroutine inline up to its first suspension,
  // then blocks its worker until the coroutine is done: the coroutine must
  // resume on the other worker.
  ctxpool::thread_pool pool{2};
  auto outcome = pool.submit([&pool] {
    ctxpool::set_scope scope(request_id, "parent-task");
    std::promise<std::pair<std::thread::id, std::string>> done;
    asio::co_spawn(
        pool.get_executor(),
        [&done]() -> asio::awaitable<void> {
          auto tok = step.set(41);
          co_await sleep_on_pool(2ms);
          step.reset(tok);
          auto t = step.set(step.get() + 1);
          done.set_value(
              {std::this_thread::get_id(), request_id.get() + "/" + std::to_string(step.get())});
        },
        asio::detached);
    auto [thread, seen] = done.get_future().get();
    return std::make_pair(thread != std::this_thread::get_id(), seen);
  });
  const auto [moved, seen] = outcome.get();
  CHECK(moved);
  CHECK(seen == "parent-task/1");
}

TEST_CASE("interleaved coroutines never see each other's sets") {
  ctxpool::thread_pool pool{2};
  std::vector<std::future<int>> results;
  for (int c = 0; c < 8; ++c) {
    ctxpool::set_scope scope(request_id, "coro-" + std::to_string(c));
    results.push_back(asio::co_spawn(
        pool.get_executor(),
        [c]() -> asio::awaitable<int> {
          int failures = 0;
          const std::string mine = "coro-" + std::to_string(c);
          for (int i = 0; i < 50; ++i) {
            auto tok = step.set(c * 1000 + i);
            if (i % 3 == 0) {
              co_await sleep_on_pool(1ms);
            } else {
              co_await asio::post(asio::use_awaitable);
            }
            if (step.get() != c * 1000 + i || request_id.get() != mine) ++failures;
            step.reset(tok);
          }
          co_return failures;
        },
        asio::use_future));
  }
  for (auto& r : results) CHECK(r.get() == 0);
}

TEST_CASE("a coroutine on a strand of the pool keeps its context") {
  ctxpool::thread_pool pool{2};
  auto strand = asio::make_strand(pool.get_executor());
  ctxpool::set_scope scope(request_id, "on-strand");
  auto result = asio::co_spawn(
      strand,
      []() -> asio::awaitable<int> {
        int failures = 0;
        for (int i = 0; i < 10; ++i) {
          step.set(i);
          co_await sleep_on_pool(1ms);
          if (step.get() != i || request_id.get() != "on-strand") ++failures;
        }
        co_return failures;
      },
      asio::use_future);
  CHECK(result.get() == 0);
}

TEST_CASE("wait() waits for a coroutine suspended on a timer") {
  ctxpool::thread_pool pool{2};
  std::atomic<bool> finished{false};
  asio::co_spawn(
      pool.get_executor(),
      [&finished]() -> asio::awaitable<void> {
        co_await sleep_on_pool(20ms);
        co_await sleep_on_pool(20ms);
        finished = true;
      },
      asio::detached);
  pool.wait();
  CHECK(finished);
}

TEST_CASE("stop() with a coroutine suspended on a pool timer destroys it without running it") {
  auto held = std::make_shared<int>(1);
  std::weak_ptr<int> watch = held;
  std::atomic<bool> resumed{false};
  {
    ctxpool::thread_pool pool{2};
    std::promise<void> suspended;
    asio::co_spawn(
        pool.get_executor(),
        [&, h = std::move(held)]() -> asio::awaitable<void> {
          asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::hours(1));
          suspended.set_value();
          co_await timer.async_wait(asio::use_awaitable);
          resumed = true;
          (void)h;
        },
        asio::detached);
    suspended.get_future().wait();
    pool.stop();
    CHECK_FALSE(resumed);
  }
  CHECK_FALSE(resumed);
  CHECK(watch.expired());  // the coroutine frame and what it held are gone
}

TEST_CASE(
    "a token set before co_await can be reset after it: the steps of one coroutine share one identity") {
  ctxpool::thread_pool pool{2};
  auto result = asio::co_spawn(
      pool,
      []() -> asio::awaitable<std::string> {
        auto tok = request_id.set("before");
        co_await sleep_on_pool(1ms);
        co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
        request_id.reset(tok);  // must not throw
        co_return request_id.get_or("unset");
      },
      asio::use_future);
  CHECK(result.get() == "unset");
}

namespace {

/// What a child coroutine observed about its parent's token, and the token it left.
struct crossing {
  std::atomic<bool> child_could_reset_parent{false};
  std::atomic<bool> child_saw_parent_value{false};
  std::optional<ctxpool::token<std::string>> child_token;
};

asio::awaitable<void> child(ctxpool::token<std::string>* parent_token, crossing* seen) {
  seen->child_saw_parent_value = request_id.get_or("") == "parent";
  try {
    request_id.reset(*parent_token);
    seen->child_could_reset_parent = true;
  } catch (const ctxpool::token_error&) {
  }
  co_await sleep_on_pool(1ms);
  seen->child_token.emplace(request_id.set("child"));
}

}  // namespace

TEST_CASE("a coroutine spawned from a coroutine is a new task: neither resets the other's token") {
  for (std::size_t threads : {1, 2, 4}) {
    ctxpool::thread_pool pool{threads};
    crossing seen;
    auto parent = asio::co_spawn(
        pool,
        [&seen]() -> asio::awaitable<std::string> {
          auto tok = request_id.set("parent");
          auto ex = co_await asio::this_coro::executor;  // an any_io_executor
          co_await asio::co_spawn(ex, child(&tok, &seen), asio::use_awaitable);
          std::string parent_could_reset_child = "no";
          try {
            request_id.reset(*seen.child_token);
            parent_could_reset_child = "yes";
          } catch (const ctxpool::token_error&) {
          }
          request_id.reset(tok);  // its own token still works after the child ran
          co_return parent_could_reset_child + "/" + request_id.get_or("unset");
        },
        asio::use_future);
    CHECK(parent.get() == "no/unset");
    CHECK(seen.child_saw_parent_value);
    CHECK_FALSE(seen.child_could_reset_parent);
  }
}

TEST_CASE(
    "co_spawn on the executor, a strand and the pool starts a new task with the spawner's values") {
  ctxpool::thread_pool pool{2};
  auto tok = request_id.set("spawner");
  auto try_reset = [&tok]() -> asio::awaitable<std::string> {
    std::string value = request_id.get();
    try {
      request_id.reset(tok);
      co_return value + ":reset";
    } catch (const ctxpool::token_error&) {
      co_return value + ":refused";
    }
  };
  CHECK(asio::co_spawn(pool.get_executor(), try_reset, asio::use_future).get() ==
        "spawner:refused");
  CHECK(asio::co_spawn(asio::make_strand(pool), try_reset, asio::use_future).get() ==
        "spawner:refused");
  CHECK(asio::co_spawn(pool, try_reset(), asio::use_future).get() == "spawner:refused");
  asio::any_io_executor any = pool.get_executor();
  CHECK(asio::co_spawn(any, try_reset(), asio::use_future).get() == "spawner:refused");
  request_id.reset(tok);
}

TEST_CASE(
    "a coroutine step that resumed off the pool submits from outside, and on it from its worker") {
  // The queue submit picks (a worker's own deque, or the injection queue for
  // other threads) depends on a thread-local; a coroutine compiled by clang
  // could keep its address from the thread of an earlier step (see
  // tests/context/coroutine_thread_test.cpp) and push to a worker's deque
  // from a thread that does not own it.
  ctxpool::thread_pool pool{2};
  struct step_seen {
    bool on_pool = false;
    int submitted = 0;
  };
  std::vector<step_seen> seen(4);
  auto body = [](ctxpool::thread_pool& p, step_seen* out) -> ctxpool_test::manual_task {
    for (int i = 0; i < 4; ++i) {
      out[i].on_pool = p.get_executor().running_in_this_thread();
      out[i].submitted = p.submit([i] { return i; }).get();
      co_await ctxpool_test::suspend_here{};
    }
  };
  std::optional<ctxpool_test::manual_task> task;
  // Steps 0 and 2 run on a worker, 1 and 3 on this thread.
  pool.submit([&] { task.emplace(body(pool, seen.data())); }).get();
  task->handle.resume();
  pool.submit([&] { task->handle.resume(); }).get();
  task->handle.resume();
  pool.submit([&] { task->handle.resume(); }).get();
  REQUIRE(task->handle.done());
  for (int i = 0; i < 4; ++i) {
    CAPTURE(i);
    CHECK(seen[i].on_pool == (i % 2 == 0));
    CHECK(seen[i].submitted == i);
  }
}
