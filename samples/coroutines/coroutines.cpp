// coroutines: coroutines and plain tasks interleaving on one pool, each with its
// own context.
//
// A coroutine spawned on the pool (`asio::co_spawn(pool.get_executor(), ...)`)
// starts in a copy of its spawner's context and keeps that one context for its
// whole life, across every `co_await`, also when it resumes on another worker
// -- the model of an asyncio Task. A token taken before a `co_await` can be
// reset after it. Plain tasks submitted in between run on the same workers
// while the coroutines are suspended, each in a copy of its own submitter's
// context; nothing one sets is seen by another.
//
// Some coroutines run on strands of the pool; some of their timers live on a
// separate io_context with its own thread (a "foreign" one), whose
// completions still resume the coroutine on the pool, in its own context.
//
// Finally, one coroutine runs inside a given context itself (asyncio's
// `create_task(coro, context=ctx)`): what it sets stays in that context, seen
// after it finishes; a coroutine it spawns is a new task that sees its values
// but cannot reset its token.
//
// Every coroutine and task checks what it sees at every step; the program
// exits non-zero on any mismatch, or if pool.wait() returns while a coroutine
// is still suspended on a timer.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <ctxpool/context.hpp>
#include <ctxpool/executor.hpp>

namespace asio = boost::asio;

namespace {

ctxpool::context_var<std::string> who{"who"};  // set by whoever starts the work
ctxpool::context_var<int> step{"step", -1};    // set by the work itself

std::atomic<int> failures{0};
std::atomic<int> coroutines_done{0};
std::atomic<int> tasks_done{0};
std::atomic<int> resumed_elsewhere{0};
std::mutex report_mutex;

void check(bool ok, const std::string& me, const char* what) {
  if (ok) return;
  if (failures.fetch_add(1) < 20) {
    std::lock_guard lock(report_mutex);
    std::printf("  FAIL %s: %s\n", me.c_str(), what);
  }
}

constexpr int rounds = 12;

/// A sub-coroutine: awaited directly, it runs as part of its caller.
asio::awaitable<std::string> lookup(std::chrono::milliseconds delay) {
  asio::steady_timer timer(co_await asio::this_coro::executor, delay);
  co_await timer.async_wait(asio::use_awaitable);
  co_return who.get_or("<none>");
}

/// Timers for some rounds live here: an io_context run by a thread of its own.
asio::io_context* foreign_io = nullptr;

asio::awaitable<int> session(int n) {
  const std::string me = "coroutine " + std::to_string(n);
  check(who.get_or("") == me, me, "started in its spawner's context");
  check(step.get() == -1, me, "nothing set yet");
  std::thread::id last = std::this_thread::get_id();
  bool moved = false;

  for (int i = 0; i < rounds; ++i) {
    auto tok = step.set(i);
    const auto delay = std::chrono::milliseconds((n + i) % 3);
    if (i % 3 == 2) {
      // Completes on the foreign io_context's thread; resumes on the pool.
      asio::steady_timer timer(*foreign_io, delay);
      co_await timer.async_wait(asio::use_awaitable);
    } else {
      asio::steady_timer timer(co_await asio::this_coro::executor, delay);
      co_await timer.async_wait(asio::use_awaitable);  // other work runs on this worker now
    }

    check(who.get_or("") == me, me, "who survived the co_await");
    check(step.get() == i, me, "its own step survived the co_await");
    if (std::this_thread::get_id() != last) moved = true;
    last = std::this_thread::get_id();

    if (i % 4 == 0) {
      const std::string seen = co_await lookup(std::chrono::milliseconds(1));
      check(seen == me, me, "an awaited sub-coroutine sees the caller's context");
      check(step.get() == i, me, "step intact after the sub-coroutine");
    }
    step.reset(tok);  // a token from before the co_await, reset after it
    check(step.get() == -1, me, "reset across a co_await restored the default");
  }
  if (moved) resumed_elsewhere.fetch_add(1);
  co_return n;
}

void plain_task(int n) {
  const std::string me = "task " + std::to_string(n);
  check(who.get_or("") == me, me, "runs in its submitter's context");
  check(step.get() == -1, me, "no coroutine's step leaked into it");
  auto tok = step.set(1000 + n);  // only this task sees it
  std::this_thread::sleep_for(std::chrono::microseconds(200));
  check(step.get() == 1000 + n, me, "its own step");
  step.reset(tok);
  tasks_done.fetch_add(1);
}

/// One request's context, given to a coroutine that runs every step inside it.
void run_in_given_context(ctxpool::thread_pool& pool) {
  const std::string me = "request 7";
  ctxpool::context request;
  request.run([&me] { who.set(me); });
  auto child_refused = asio::co_spawn(
      ctxpool::in_context(request, pool.get_executor()),
      [me]() -> asio::awaitable<bool> {
        auto tok = step.set(1);
        asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(1));
        co_await timer.async_wait(asio::use_awaitable);
        check(who.get_or("") == me, me, "runs inside the given context");
        const bool refused = co_await asio::co_spawn(
            co_await asio::this_coro::executor,
            [&tok]() -> asio::awaitable<bool> {
              try {
                step.reset(tok);
                co_return false;
              } catch (const ctxpool::token_error&) {
                co_return true;  // a new task: not its parent's token to reset
              }
            },
            asio::use_awaitable);
        step.reset(tok);  // its own token, across the co_awaits
        step.set(2);
        co_return refused;
      },
      asio::use_future);
  check(child_refused.get(), me, "a spawned coroutine cannot reset its parent's token");
  pool.wait();
  check(request.get(step) == 2, me, "the coroutine's set is seen in its context afterwards");
}

}  // namespace

int main() {
  constexpr int coroutines = 40;
  constexpr int tasks = 160;
  asio::io_context foreign;
  auto foreign_work = asio::make_work_guard(foreign);
  std::thread foreign_thread([&foreign] { foreign.run(); });
  foreign_io = &foreign;
  ctxpool::thread_pool pool(2);

  // Interleave: every fifth piece of work is a coroutine, the rest plain tasks.
  // Half the coroutines are detached, half report through a completion
  // handler; every third runs on a strand of its own.
  int next_coroutine = 0;
  int next_task = 0;
  std::vector<std::future<void>> task_results;
  for (int i = 0; i < coroutines + tasks; ++i) {
    if (i % 5 == 0 && next_coroutine < coroutines) {
      const int n = next_coroutine++;
      ctxpool::set_scope as_spawner(who, "coroutine " + std::to_string(n));
      asio::any_io_executor ex = pool.get_executor();
      if (n % 3 == 0) ex = asio::make_strand(pool.get_executor());
      if (n % 2 == 0) {
        asio::co_spawn(ex, session(n), [n](std::exception_ptr e, int result) {
          if (e) {
            check(false, "coroutine " + std::to_string(n), "threw");
          } else {
            check(result == n, "coroutine " + std::to_string(n), "completion handler result");
          }
          coroutines_done.fetch_add(1);
        });
      } else {
        asio::co_spawn(
            ex,
            [n]() -> asio::awaitable<void> {
              co_await session(n);
              coroutines_done.fetch_add(1);
            },
            asio::detached);
      }
    } else {
      const int n = next_task++;
      ctxpool::set_scope as_submitter(who, "task " + std::to_string(n));
      task_results.push_back(pool.submit([n] { plain_task(n); }));
    }
    if (i % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (auto& r : task_results) r.get();
  pool.wait();  // includes timers the coroutines are suspended on
  const int finished = coroutines_done.load();
  run_in_given_context(pool);
  pool.join();
  foreign_work.reset();
  foreign_thread.join();

  std::printf(
      "coroutines: %d coroutines (%d resumed on another worker at least once), %d "
      "plain tasks, %d failures\n",
      finished, resumed_elsewhere.load(), tasks_done.load(), failures.load());
  bool ok = failures.load() == 0 && tasks_done.load() == tasks;
  if (finished != coroutines) {
    std::printf("FAIL: pool.wait() returned with %d of %d coroutines unfinished\n",
                coroutines - finished, coroutines);
    ok = false;
  }
  if (who.get_or("") != "") {
    std::printf("FAIL: a value leaked back into main's context\n");
    ok = false;
  }
  std::printf("%s\n", ok ? "OK: every coroutine and task kept its own context" : "FAIL");
  return ok ? 0 : 1;
}
