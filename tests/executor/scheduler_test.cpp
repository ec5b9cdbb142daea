// The scheduler's promises: start order of outside submissions, progress for
// every queued task however a worker keeps itself busy, work spread across
// workers, and timers that fire while every worker is idle.
#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "support/watchdog.hpp"

using namespace std::chrono_literals;

TEST_CASE("tasks posted from outside a one-worker pool start in submission order") {
  ctxpool::thread_pool pool{1};
  std::vector<int> order;  // one worker: no lock needed, wait() publishes it
  std::promise<void> gate;
  std::shared_future<void> open = gate.get_future().share();
  pool.post([open] { open.wait(); });  // hold the worker until all are queued
  for (int i = 0; i < 1000; ++i) pool.post([&order, i] { order.push_back(i); });
  gate.set_value();
  pool.wait();
  REQUIRE(order.size() == 1000);
  for (int i = 0; i < 1000; ++i) CHECK(order[static_cast<std::size_t>(i)] == i);
}

namespace {

/// Holds every worker of `pool` in a task until `open()`: tasks posted
/// meanwhile wait in the injection queue, and the first worker let go takes
/// them as one batch.
class hold_workers {
 public:
  explicit hold_workers(ctxpool::thread_pool& pool) : open_(gate_.get_future().share()) {
    for (std::size_t i = 0; i < pool.stats().threads; ++i) {
      pool.post([this] {
        ++held_;
        open_.wait();
      });
    }
    while (held_.load() != static_cast<int>(pool.stats().threads)) std::this_thread::yield();
  }
  void open() { gate_.set_value(); }

 private:
  std::promise<void> gate_;
  std::shared_future<void> open_;
  std::atomic<int> held_{0};
};

}  // namespace

TEST_CASE("an outside task batched behind a task that blocks its worker runs on another") {
  // The first worker let go takes `blocker` and `later` as one batch and runs
  // the blocker, which waits for `later`: only another worker taking it from
  // the first one's inbox lets either finish.
  for (int round = 0; round < 50; ++round) {
    ctxpool::thread_pool pool{2};
    hold_workers held{pool};
    std::promise<void> later_ran;
    std::shared_future<void> later_done = later_ran.get_future().share();
    pool.post([later_done] { later_done.wait(); });
    pool.post([&later_ran] { later_ran.set_value(); });
    held.open();
    pool.wait();
  }
}

TEST_CASE(
    "a worker fed a stream of outside tasks still takes the ones batched by a blocked worker") {
  // As above, with a backlog behind: the free worker could take batch after
  // batch from the injection queue and reach `later` only once it is empty.
  // The periodic look at the other inboxes makes it take `later` early.
  ctxpool::thread_pool pool{2};
  hold_workers held{pool};
  constexpr int backlog = 10'000;
  std::atomic<int> backlog_ran{0};
  std::atomic<int> ran_before_later{-1};
  std::promise<void> later_ran;
  std::shared_future<void> later_done = later_ran.get_future().share();
  pool.post([later_done] { later_done.wait(); });
  pool.post([&] {
    ran_before_later = backlog_ran.load();
    later_ran.set_value();
  });
  for (int i = 0; i < backlog; ++i) pool.post([&backlog_ran] { ++backlog_ran; });
  held.open();
  pool.wait();
  CHECK(backlog_ran == backlog);
  // One batch and one fairness interval's worth, give or take: not the backlog.
  CHECK(ran_before_later.load() >= 0);
  CHECK(ran_before_later.load() < 200);
}

TEST_CASE("a task that keeps re-posting itself does not starve the tasks queued before it") {
  // One worker, whose own deque runs newest first: without the periodic look
  // at the oldest task the earlier tasks would wait for the loop to end,
  // which it only does once they have run.
  ctxpool::thread_pool pool{1};
  std::atomic<int> earlier_done{0};
  constexpr int earlier = 50;
  std::promise<void> loop_done;
  struct loop {
    ctxpool::thread_pool* pool;
    std::atomic<int>* earlier_done;
    std::promise<void>* done;
    void operator()() const {
      if (earlier_done->load() == earlier) {
        done->set_value();
        return;
      }
      pool->post(*this);
    }
  };
  pool.post([&] {
    for (int i = 0; i < earlier; ++i) pool.post([&earlier_done] { ++earlier_done; });
    pool.post(loop{&pool, &earlier_done, &loop_done});
  });
  loop_done.get_future().get();
  pool.wait();
  CHECK(earlier_done == earlier);
}

TEST_CASE("outside submissions keep their order behind a worker's own tasks") {
  // A worker busy with a long stream of its own tasks still takes tasks from
  // outside in between (the injection queue is looked at periodically).
  ctxpool::thread_pool pool{1};
  std::atomic<bool> outside_ran{false};
  std::atomic<int> own_after_outside{-1};
  std::atomic<int> own_done{0};
  std::promise<void> started;
  pool.post([&] {
    started.set_value();
    struct chain {
      ctxpool::thread_pool* pool;
      std::atomic<bool>* outside_ran;
      std::atomic<int>* own_done;
      std::atomic<int>* own_after_outside;
      void operator()() const {
        const int n = ++*own_done;
        if (outside_ran->load()) {
          int expected = -1;
          own_after_outside->compare_exchange_strong(expected, n);
          return;  // the chain ends once the outside task has run
        }
        pool->post(*this);
      }
    };
    pool.post(chain{&pool, &outside_ran, &own_done, &own_after_outside});
  });
  started.get_future().wait();
  pool.post([&] { outside_ran = true; });
  pool.wait();
  CHECK(outside_ran);
  CHECK(own_after_outside >= 0);
}

TEST_CASE("tasks submitted from one worker are stolen by the others") {
  ctxpool::thread_pool pool{4};
  std::mutex mutex;
  std::set<std::thread::id> threads;
  std::atomic<int> running{0};
  std::atomic<bool> all_four{false};
  auto done = pool.submit([&] {
    // Each child waits (bounded by the others arriving) so that one worker
    // alone cannot run them all: only stealing spreads them.
    for (int i = 0; i < 4; ++i) {
      pool.post([&] {
        {
          std::lock_guard lock(mutex);
          threads.insert(std::this_thread::get_id());
        }
        if (++running == 4) all_four = true;
        while (!all_four) std::this_thread::yield();
      });
    }
  });
  done.get();
  pool.wait();
  CHECK(threads.size() == 4);
}

TEST_CASE("a timer fires while every worker is parked") {
  for (std::size_t workers : {1, 2, 4}) {
    ctxpool::thread_pool pool{workers};
    pool.post([] {});
    pool.wait();
    std::this_thread::sleep_for(20ms);  // let every worker go past spinning into sleep
    boost::asio::steady_timer timer(pool, 5ms);
    std::promise<void> fired;
    timer.async_wait([&](const boost::system::error_code&) { fired.set_value(); });
    fired.get_future().get();  // would hang if no idle worker sleeps in the scheduler
    CHECK(pool.stats().completed >= 1);
  }
}

TEST_CASE("a burst from outside wakes enough workers to run blocking tasks side by side") {
  // Four tasks that each wait for all four to have started: they finish only
  // if four workers run them at once, so each push must reach a sleeping worker.
  for (int round = 0; round < 20; ++round) {
    ctxpool::thread_pool pool{4};
    std::this_thread::sleep_for(1ms);
    std::atomic<int> started{0};
    for (int i = 0; i < 4; ++i) {
      pool.post([&started] {
        ++started;
        while (started.load() < 4) std::this_thread::yield();
      });
    }
    // A lost wake-up leaves tasks queued behind sleeping workers for good:
    // fail loudly instead of hanging until CTest's timeout.
    ctxpool_test::finishes_within("wait() for four tasks that need four awake workers",
                                  [&pool] { pool.wait(); });
    CHECK(started == 4);
  }
}

TEST_CASE("a burst from a worker wakes enough workers to run blocking tasks side by side") {
  // The same from inside: a task queues three on its own deque and then
  // blocks until all four run. A push from a worker that sees another
  // worker searching wakes no one; that worker, if it finds its task only
  // at the last look before it sleeps, must hand the rest on as a searcher
  // that finds work does, or two of the three stay queued behind sleepers.
  for (int round = 0; round < 20; ++round) {
    ctxpool::thread_pool pool{4};
    std::this_thread::sleep_for(1ms);
    std::atomic<int> started{0};
    pool.post([&pool, &started] {
      for (int i = 0; i < 3; ++i) {
        pool.post([&started] {
          ++started;
          while (started.load() < 4) std::this_thread::yield();
        });
      }
      ++started;
      while (started.load() < 4) std::this_thread::yield();
    });
    ctxpool_test::finishes_within("wait() for a worker's burst that needs four awake workers",
                                  [&pool] { pool.wait(); });
    CHECK(started == 4);
  }
}

TEST_CASE("batches posted from outside never leave a task behind a sleeping worker") {
  // The worker empties the queue, goes to sleep, and a new batch must wake
  // it, thousands of times: a lost wake-up hangs here. (One such race: a pop
  // that puts the queue's stub back while a push is linking once made the
  // queue look empty to a worker going to sleep.)
  for (std::size_t workers : {1, 2}) {
    ctxpool::thread_pool pool{workers};
    std::atomic<int> ran{0};
    for (int round = 0; round < 3000; ++round) {
      for (int i = 0; i < 20; ++i)
        pool.post([&ran] { ran.fetch_add(1, std::memory_order_relaxed); });
      pool.wait();
    }
    CHECK(ran == 3000 * 20);
  }
}
