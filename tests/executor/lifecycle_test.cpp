// Tests of thread_pool's lifecycle: wait, join, stop, the destructor, and
// the errors that misuse gets instead of a hang or a crash.
#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/watchdog.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace asio = boost::asio;

namespace {

/// Occupies the only worker of `pool` until the pool is closed, then returns.
/// Posting no-ops is how a task can observe the close without a timing guess.
void block_until_closed(ctxpool::thread_pool& pool) {
  for (;;) {
    try {
      pool.post([] {});
    } catch (const ctxpool::pool_closed&) {
      return;
    }
    std::this_thread::yield();
  }
}

/// Bounds the calls that would hang on a lost wake-up or a stuck shutdown.
using ctxpool_test::finishes_within;

}  // namespace

TEST_CASE("wait returns once everything queued has run, and the pool stays usable") {
  ctxpool::thread_pool pool{2};
  std::atomic<int> done{0};
  for (int i = 0; i < 1000; ++i) pool.post([&done] { ++done; });
  pool.wait();
  CHECK(done == 1000);
  for (int i = 0; i < 10; ++i) pool.post([&done] { ++done; });
  pool.wait();
  CHECK(done == 1010);
}

TEST_CASE("wait also waits for work that running tasks submit") {
  ctxpool::thread_pool pool{2};
  std::atomic<int> done{0};
  pool.post([&pool, &done] {
    for (int i = 0; i < 100; ++i) {
      pool.post([&pool, &done] { pool.post([&done] { ++done; }); });
    }
  });
  pool.wait();
  CHECK(done == 100);
}

TEST_CASE("wait and stats count every task from more outside threads than the pool has lanes") {
  // Outside threads count their submits in a few shared lanes and workers
  // count completions in their own: the totals must still add up exactly, and
  // a wait() racing with the producers must neither hang nor miss a task.
  ctxpool::thread_pool pool{2};
  constexpr int producers = 9;
  constexpr int per_producer = 2000;
  std::atomic<int> done{0};
  std::atomic<bool> producing{true};
  finishes_within("wait() racing with nine producers", [&] {
    std::thread waiter([&] {
      while (producing.load()) pool.wait();
    });
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&] {
        for (int i = 0; i < per_producer; ++i) pool.post([&done] { ++done; });
      });
    }
    for (auto& thread : threads) thread.join();
    producing.store(false);
    waiter.join();
    pool.wait();
  });
  CHECK(done == producers * per_producer);
  const ctxpool::thread_pool_stats stats = pool.stats();
  CHECK(stats.queued == 0);
  CHECK(stats.running == 0);
  CHECK(stats.completed == producers * per_producer);
}

TEST_CASE("once wait returns, values held only by finished tasks' contexts are released") {
  ctxpool::context_var<std::shared_ptr<int>> payload{"payload"};
  ctxpool::thread_pool pool{2};
  std::weak_ptr<int> watch;
  {
    auto value = std::make_shared<int>(7);
    watch = value;
    auto tok = payload.set(std::move(value));
    for (int i = 0; i < 100; ++i) pool.post([&payload] { (void)payload.get(); });
    payload.reset(tok);  // the submitter lets go; only the tasks' snapshots hold it
  }
  pool.wait();
  CHECK(watch.expired());
}

namespace {

/// Posts the two children of a binary tree of tasks `levels` deep, each
/// reading `payload` (so every task holds the context it was submitted in).
void post_subtree(ctxpool::thread_pool& pool, ctxpool::context_var<std::shared_ptr<int>>& payload,
                  int levels) {
  (void)payload.get();
  if (levels <= 1) return;
  for (int child = 0; child < 2; ++child) {
    pool.post([&pool, &payload, levels] { post_subtree(pool, payload, levels - 1); });
  }
}

}  // namespace

TEST_CASE("once wait returns, values are released also when the tasks spawned each other") {
  // Workers keep the references of the tasks they finish for the next tasks
  // from the same context; wait() must still not return before they let go.
  ctxpool::context_var<std::shared_ptr<int>> payload{"payload"};
  ctxpool::thread_pool pool{4};
  for (int round = 0; round < 20; ++round) {
    std::weak_ptr<int> watch;
    {
      auto value = std::make_shared<int>(round);
      watch = value;
      auto tok = payload.set(std::move(value));
      pool.post([&pool, &payload] { post_subtree(pool, payload, 8); });
      payload.reset(tok);
    }
    // A worker that never gave its spares back would keep wait() waiting.
    finishes_within("wait() after a tree of tasks", [&] { pool.wait(); });
    CHECK(watch.expired());
  }
}

namespace {

/// Posts `task` on `pool` in a context where `payload` holds a new value that
/// `watch` observes; `task` starts only once the submitter has let go of the
/// value, so that from then on only the task's context holds it.
template <class Task>
void post_as_only_holder(ctxpool::thread_pool& pool,
                         ctxpool::context_var<std::shared_ptr<int>>& payload,
                         std::weak_ptr<int>& watch, Task task) {
  std::promise<void> reset_done;
  {
    auto value = std::make_shared<int>(7);
    watch = value;
    auto tok = payload.set(std::move(value));
    pool.post([task = std::move(task), gate = reset_done.get_future()]() mutable {
      gate.wait();
      task();
    });
    payload.reset(tok);
  }
  reset_done.set_value();
}

}  // namespace

TEST_CASE("a task's set releases a value that only the worker's spare references still held") {
  ctxpool::context_var<std::shared_ptr<int>> payload{"payload"};
  ctxpool::thread_pool pool{1};
  std::weak_ptr<int> watch;
  std::promise<bool> alive_after_set;
  std::future<bool> seen = alive_after_set.get_future();
  post_as_only_holder(pool, payload, watch, [&] {
    // Capturing the context again and again makes the worker take
    // references to its map ahead.
    for (int i = 0; i < 16; ++i) (void)ctxpool::bind_context([] {});
    payload.set(std::make_shared<int>(8));
    alive_after_set.set_value(!watch.expired());
  });
  CHECK_FALSE(seen.get());
}

TEST_CASE("a worker lets go of a finished task's context before it starts a task from another") {
  ctxpool::context_var<std::shared_ptr<int>> payload{"payload"};
  ctxpool::thread_pool pool{1};
  std::weak_ptr<int> watch;
  std::promise<bool> alive_in_next_task;
  std::future<bool> seen = alive_in_next_task.get_future();
  post_as_only_holder(pool, payload, watch, [&] {
    // The next task, queued on this worker from an empty context, runs as
    // soon as this one ends: the worker never goes idle in between.
    ctxpool::context{}.run([&] {
      pool.post([&watch, &alive_in_next_task] { alive_in_next_task.set_value(!watch.expired()); });
    });
  });
  CHECK_FALSE(seen.get());
  pool.wait();
}

TEST_CASE("wait waits for a pending timer started through the executor") {
  ctxpool::thread_pool pool{2};
  std::atomic<bool> fired{false};
  asio::steady_timer timer(pool.get_executor(), std::chrono::milliseconds(30));
  timer.async_wait([&fired](boost::system::error_code) { fired = true; });
  pool.wait();
  CHECK(fired);
}

TEST_CASE("wait, join and stop from a pool thread throw instead of deadlocking") {
  ctxpool::thread_pool pool{1};
  CHECK_THROWS_AS(pool.submit([&pool] { pool.wait(); }).get(), std::logic_error);
  CHECK_THROWS_AS(pool.submit([&pool] { pool.join(); }).get(), std::logic_error);
  CHECK_THROWS_AS(pool.submit([&pool] { pool.stop(); }).get(), std::logic_error);
  CHECK(pool.submit([] { return 3; }).get() == 3);
}

TEST_CASE("join runs everything queued, then submit and post throw pool_closed") {
  ctxpool::thread_pool pool{2};
  std::atomic<int> done{0};
  for (int i = 0; i < 500; ++i) {
    pool.post([&pool, &done] {
      ++done;
      pool.post([&done] { ++done; });  // tasks may still submit during the join
    });
  }
  pool.join();
  CHECK(done == 1000);
  CHECK_THROWS_AS(pool.post([] {}), ctxpool::pool_closed);
  CHECK_THROWS_AS((void)pool.submit([] {}), ctxpool::pool_closed);
  pool.join();  // idempotent
  pool.stop();  // and stop after join is harmless
}

TEST_CASE("pool_closed is a runtime_error with a message that says what happened") {
  ctxpool::thread_pool pool{1};
  pool.join();
  try {
    pool.post([] {});
    FAIL("post after join did not throw");
  } catch (const std::runtime_error& e) {
    CHECK(dynamic_cast<const ctxpool::pool_closed*>(&e) != nullptr);
    CHECK(std::string(e.what()).find("joined or stopped") != std::string::npos);
  }
}

TEST_CASE("stop lets the running task finish and breaks the promises of queued ones") {
  ctxpool::thread_pool pool{1};
  std::promise<void> started;
  auto running = pool.submit([&pool, &started] {
    started.set_value();
    block_until_closed(pool);
    return 1;
  });
  started.get_future().wait();
  std::vector<std::future<int>> queued;
  for (int i = 0; i < 20; ++i) queued.push_back(pool.submit([] { return 2; }));
  pool.stop();
  CHECK(running.get() == 1);
  for (auto& f : queued) {
    REQUIRE(f.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
    try {
      f.get();
      FAIL("a queued task ran after stop");
    } catch (const std::future_error& e) {
      CHECK(e.code() == std::future_errc::broken_promise);
    }
  }
  CHECK_THROWS_AS((void)pool.submit([] { return 0; }), ctxpool::pool_closed);
  pool.stop();  // idempotent
  pool.join();  // harmless after stop
}

TEST_CASE("stop breaks the promises of tasks a worker took as a batch but had not started") {
  // The worker, let go, takes `running` and the next 16 tasks in one batch:
  // those wait in its inbox, not in the injection queue, when stop() comes.
  ctxpool::thread_pool pool{1};
  std::promise<void> gate;
  pool.post([open = gate.get_future().share()] { open.wait(); });
  std::promise<void> started;
  auto running = pool.submit([&pool, &started] {
    started.set_value();
    block_until_closed(pool);
    return 1;
  });
  std::vector<std::future<int>> queued;
  for (int i = 0; i < 20; ++i) queued.push_back(pool.submit([] { return 2; }));
  gate.set_value();
  started.get_future().wait();
  finishes_within("stop() with tasks in a worker's inbox", [&pool] { pool.stop(); });
  CHECK(running.get() == 1);
  int broken = 0;
  for (auto& f : queued) {
    REQUIRE(f.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
    try {
      f.get();
    } catch (const std::future_error& e) {
      if (e.code() == std::future_errc::broken_promise) ++broken;
    }
  }
  CHECK(broken == 20);
}

TEST_CASE("stop destroys queued tasks before it returns, releasing what they hold") {
  auto held = std::make_shared<int>(5);
  std::weak_ptr<int> watch = held;
  ctxpool::thread_pool pool{1};
  std::promise<void> started;
  pool.post([&pool, &started] {
    started.set_value();
    block_until_closed(pool);
  });
  started.get_future().wait();
  pool.post([h = std::move(held)] { (void)h; });
  pool.stop();
  CHECK(watch.expired());
}

TEST_CASE("stop with a pending timer destroys the wait without running it") {
  ctxpool::thread_pool pool{1};
  std::atomic<bool> fired{false};
  auto timer = std::make_unique<asio::steady_timer>(pool.get_executor(), std::chrono::hours(1));
  timer->async_wait([&fired](boost::system::error_code) { fired = true; });
  pool.stop();
  CHECK_FALSE(fired);
  timer.reset();  // a timer may outlive stop() (but not the pool)
}

TEST_CASE("the destructor runs every queued task, including what they submit") {
  std::atomic<int> done{0};
  {
    ctxpool::thread_pool pool{1};
    std::promise<void> release;
    pool.post([gate = release.get_future()] { gate.wait(); });
    for (int i = 0; i < 100; ++i) {
      pool.post([&pool, &done] {
        ++done;
        pool.post([&done] { ++done; });
      });
    }
    release.set_value();
  }
  CHECK(done == 200);
}

TEST_CASE("submit racing with join either runs or throws pool_closed, never hangs or drops") {
  for (int round = 0; round < 20; ++round) {
    ctxpool::thread_pool pool{2};
    std::atomic<int> accepted{0};
    std::atomic<int> ran{0};
    std::thread submitter([&] {
      for (int i = 0; i < 1000; ++i) {
        try {
          pool.post([&ran] { ++ran; });
          ++accepted;
        } catch (const ctxpool::pool_closed&) {
          break;
        }
      }
    });
    pool.join();
    submitter.join();
    CHECK(ran == accepted);
  }
}

TEST_CASE(
    "submit racing stop: each submit throws pool_closed or its task is done before stop returns") {
  // Eight producers against stop(), 50 rounds: a task slipping into the queue
  // after stop() emptied it used to leave its future waiting forever.
  for (int round = 0; round < 50; ++round) {
    ctxpool::thread_pool pool{2};
    constexpr int producers = 8;
    std::vector<std::vector<std::future<int>>> futures(producers);
    std::atomic<int> started{0};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&pool, &futures, &started, p] {
        ++started;
        for (int i = 0; i < 2000; ++i) {
          try {
            futures[p].push_back(pool.submit([] { return 1; }));
          } catch (const ctxpool::pool_closed&) {
            return;
          }
        }
      });
    }
    while (started < producers) std::this_thread::yield();
    finishes_within("stop() racing submit", [&pool] { pool.stop(); });
    for (std::thread& t : threads) t.join();
    // Every accepted submit was accepted before stop() returned, so its task
    // has run or been destroyed by now: no future may still be waiting.
    int waiting = 0;
    int wrong = 0;
    for (auto& list : futures) {
      for (auto& f : list) {
        if (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
          ++waiting;
          continue;
        }
        try {
          if (f.get() != 1) ++wrong;
        } catch (const std::future_error& e) {
          if (e.code() != std::future_errc::broken_promise) ++wrong;
        }
      }
    }
    REQUIRE(waiting == 0);
    CHECK(wrong == 0);
    finishes_within("wait() after stop()", [&pool] { pool.wait(); });
  }
}

TEST_CASE("stop returns while other threads keep posting through the executor, and nothing leaks") {
  // Handlers count themselves alive, so a handler neither run nor destroyed shows.
  struct counted_handler {
    std::atomic<int>* alive;
    explicit counted_handler(std::atomic<int>* a) : alive(a) { alive->fetch_add(1); }
    counted_handler(const counted_handler& other) : alive(other.alive) { alive->fetch_add(1); }
    ~counted_handler() { alive->fetch_sub(1); }
    void operator()() const {}
  };
  std::atomic<int> alive{0};
  std::atomic<bool> stop_returned{false};
  {
    ctxpool::thread_pool pool{2};
    std::atomic<int> posted{0};
    std::vector<std::thread> posters;
    for (int i = 0; i < 4; ++i) {
      posters.emplace_back([&] {
        // Until stop() returns: a stop that waits for the posts to end never does.
        while (!stop_returned.load(std::memory_order_relaxed)) {
          for (int j = 0; j < 64; ++j) asio::post(pool, counted_handler{&alive});
          posted.fetch_add(64, std::memory_order_relaxed);
        }
      });
    }
    while (posted.load() < 10'000) std::this_thread::yield();
    finishes_within("stop() with four threads posting", [&] { pool.stop(); });
    stop_returned = true;
    for (std::thread& poster : posters) poster.join();
  }
  CHECK(alive.load() == 0);  // every handler ran or was destroyed with the pool
}

TEST_CASE("wait after stop returns even with tracked work outstanding") {
  ctxpool::thread_pool pool{1};
  auto guard = asio::make_work_guard(pool.get_executor());  // tracked work that never ends
  pool.stop();
  finishes_within("wait() after stop() with a work guard", [&pool] { pool.wait(); });
  guard.reset();
}

TEST_CASE("the destructor does not wait for a coroutine awaiting an accept that never comes") {
  auto held = std::make_shared<int>(1);
  std::weak_ptr<int> watch = held;
  std::atomic<bool> resumed{false};
  auto pool = std::make_unique<ctxpool::thread_pool>(2);
  std::promise<void> listening;
  asio::co_spawn(
      *pool,
      [&, h = std::move(held)]() -> asio::awaitable<void> {
        asio::ip::tcp::acceptor acceptor(co_await asio::this_coro::executor,
                                         {asio::ip::address_v4::loopback(), 0});
        listening.set_value();
        auto socket = co_await acceptor.async_accept(asio::use_awaitable);  // nobody connects
        resumed = true;
        (void)h;
      },
      asio::detached);
  listening.get_future().wait();
  finishes_within("~thread_pool with a pending accept", [&pool] { pool.reset(); });
  CHECK_FALSE(resumed);
  CHECK(watch.expired());  // the coroutine frame was destroyed with the pending accept
}

TEST_CASE("the destructor abandons a one-hour timer and still runs the queued tasks") {
  auto held = std::make_shared<int>(1);
  std::weak_ptr<int> watch = held;
  std::atomic<bool> fired{false};
  std::atomic<int> ran{0};
  auto pool = std::make_unique<ctxpool::thread_pool>(1);
  std::promise<void> armed;
  asio::co_spawn(
      *pool,
      [&, h = std::move(held)]() -> asio::awaitable<void> {
        asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::hours(1));
        armed.set_value();
        co_await timer.async_wait(asio::use_awaitable);
        fired = true;
        (void)h;
      },
      asio::detached);
  armed.get_future().wait();
  for (int i = 0; i < 100; ++i) pool->post([&ran] { ++ran; });
  finishes_within("~thread_pool with a one-hour timer", [&pool] { pool.reset(); });
  CHECK(ran == 100);
  CHECK_FALSE(fired);
  CHECK(watch.expired());
}

TEST_CASE("join still waits for tracked work such as a pending timer") {
  ctxpool::thread_pool pool{1};
  std::atomic<bool> fired{false};
  asio::steady_timer timer(pool, std::chrono::milliseconds(20));
  timer.async_wait([&fired](boost::system::error_code ec) { fired = !ec; });
  pool.join();
  CHECK(fired);
}
