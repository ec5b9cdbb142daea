// Plain thread_locals registered with carry_thread_local travel with the
// context: into submitted and posted tasks, strand handlers and every step of
// a coroutine, whichever worker runs it; and never from one task to another.
#include <ctxpool/carried_thread_local.hpp>

#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/watchdog.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// "Legacy" state the tests cannot change: a plain thread_local reached
// directly, and one behind a getter and a setter, with -1 meaning "none".
// The coroutine test reaches them only through functions that are not
// inlined into the coroutine, as code in another library would be: clang 16
// at -O1 keeps a thread_local's address in the coroutine frame across a
// co_await, so a step resumed on another worker would read the first
// worker's variable (a compiler limitation the README states, not the
// carrying's).
thread_local std::string current_tenant;
thread_local int locale_slot = -1;
[[gnu::noinline]] int current_locale() { return locale_slot; }
[[gnu::noinline]] void set_current_locale(int locale) { locale_slot = locale; }

const bool registered = [] {
  ctxpool::carry_thread_local("current_tenant", []() -> std::string& { return current_tenant; });
  ctxpool::carry_thread_local(
      "locale_slot", [] { return current_locale(); },
      [](int locale) { set_current_locale(locale); }, -1);
  return true;
}();

// Bounded waits: a hang fails the test instead of stalling the suite.
using ctxpool_test::get_within;

struct seen {
  std::string tenant;
  int locale;
  bool operator==(const seen&) const = default;
};
[[gnu::noinline]] seen now() { return {current_tenant, current_locale()}; }

// Restores the calling thread's values at the end of a test.
struct legacy_scope {
  legacy_scope(std::string tenant, int locale) {
    current_tenant = std::move(tenant);
    set_current_locale(locale);
  }
  ~legacy_scope() {
    current_tenant.clear();
    set_current_locale(-1);
  }
};

}  // namespace

TEST_CASE(
    "context::run installs the values captured with the context, then restores the thread's") {
  REQUIRE(registered);
  legacy_scope values("acme", 7);
  ctxpool::context captured = ctxpool::copy_context();
  current_tenant = "initech";
  set_current_locale(8);
  captured.run([] {
    CHECK(now() == seen{"acme", 7});
    current_tenant = "changed inside";
  });
  CHECK(now() == seen{"initech", 8});
  // A context that captured nothing installs the empty values.
  ctxpool::context{}.run([] { CHECK(now() == seen{"", -1}); });
  CHECK(now() == seen{"initech", 8});
}

TEST_CASE("submit carries the submitter's values; a task never sees another task's") {
  ctxpool::thread_pool pool{1};  // one worker: every task follows the previous one on it
  std::future<seen> first;
  {
    legacy_scope values("acme", 7);
    first = pool.submit([] {
      seen in_task = now();
      current_tenant = "left behind by the first task";  // the legacy code's residue
      set_current_locale(99);
      return in_task;
    });
  }
  CHECK(get_within(first) == seen{"acme", 7});
  // Submitted with no values: sees the empty ones, not the first task's.
  auto second = pool.submit(now);
  CHECK(get_within(second) == seen{"", -1});
}

TEST_CASE("concurrent submitters' tasks each see their own submitter's values") {
  ctxpool::thread_pool pool{2};
  constexpr int submitters = 4;
  constexpr int tasks_each = 200;
  std::atomic<int> wrong{0};
  std::atomic<int> ran{0};
  std::vector<std::thread> threads;
  for (int s = 0; s < submitters; ++s) {
    threads.emplace_back([&, s] {
      std::vector<std::future<void>> done;
      for (int t = 0; t < tasks_each; ++t) {
        legacy_scope values("tenant-" + std::to_string(s), s * tasks_each + t);
        done.push_back(pool.submit([&wrong, &ran, expected = now()] {
          if (!(now() == expected)) wrong.fetch_add(1);
          ran.fetch_add(1);
        }));
      }
      for (auto& f : done) {
        if (f.wait_for(30s) != std::future_status::ready) wrong.fetch_add(1000);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(ran.load() == submitters * tasks_each);
  CHECK(wrong.load() == 0);
}

TEST_CASE("asio::post on the pool and on a strand carries the poster's values") {
  ctxpool::thread_pool pool{2};
  auto strand = asio::make_strand(pool);
  std::promise<seen> posted, stranded;
  {
    legacy_scope values("posted", 1);
    asio::post(pool, [&] { posted.set_value(now()); });
    current_tenant = "stranded";
    set_current_locale(2);
    asio::post(strand, [&] { stranded.set_value(now()); });
  }
  auto posted_future = posted.get_future();
  auto stranded_future = stranded.get_future();
  CHECK(get_within(posted_future) == seen{"posted", 1});
  CHECK(get_within(stranded_future) == seen{"stranded", 2});
}

TEST_CASE("every step of a coroutine sees its values, also after resuming on another worker") {
  ctxpool::thread_pool pool{2};
  // Each step completes from this outside thread, so its resumption is posted
  // to the pool from outside; the step's own worker meanwhile runs a task that
  // waits a little for the resumption, so that the other worker resumes the
  // coroutine.
  asio::io_context outside;
  auto outside_work = asio::make_work_guard(outside);
  std::thread outside_thread([&] { outside.run(); });
  constexpr int coroutines = 4;
  constexpr int steps = 6;
  std::atomic<int> wrong{0};
  std::atomic<int> moved{0};  // resumptions on another thread than the step before
  std::vector<std::future<void>> done;
  for (int c = 0; c < coroutines; ++c) {
    legacy_scope values("co-" + std::to_string(c), c);
    done.push_back(asio::co_spawn(
        pool,
        [&pool, &outside, &wrong, &moved, c]() -> asio::awaitable<void> {
          seen expected{"co-" + std::to_string(c), c};
          for (int step = 0; step < steps; ++step) {
            if (!(now() == expected)) wrong.fetch_add(1);
            // A change made in one step is what the next step sees.
            expected.locale = c * 100 + step;
            set_current_locale(expected.locale);
            const auto before = std::this_thread::get_id();
            auto resumed = std::make_shared<std::atomic<bool>>(false);
            pool.post([resumed] {
              // Bounded: with every worker in such a wait, resumptions are only delayed.
              for (int i = 0; i < 100 && !resumed->load(); ++i) std::this_thread::sleep_for(200us);
            });
            co_await asio::post(outside, asio::use_awaitable);
            resumed->store(true);
            if (std::this_thread::get_id() != before) moved.fetch_add(1);
          }
          if (!(now() == expected)) wrong.fetch_add(1);
        },
        asio::use_future));
  }
  for (auto& f : done) get_within(f);
  outside_work.reset();
  outside_thread.join();
  CHECK(wrong.load() == 0);
  CHECK(moved.load() > 0);
  MESSAGE(moved.load() << " of " << coroutines * steps << " resumptions moved to another worker");
  // The workers are back to their own (empty) values between tasks.
  pool.wait();
  std::vector<std::future<seen>> after;
  for (int i = 0; i < 4; ++i) after.push_back(pool.submit(now));
  for (auto& f : after) CHECK(get_within(f) == seen{"", -1});
}
