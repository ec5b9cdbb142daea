// Tests of <ctxpool/executor.hpp>: submit/post propagation, residue wipe,
// exceptions, observers, stats, thread names and bind_context.
#include <ctxpool/executor.hpp>
#include <ctxpool/detail/tuned_pool.hpp>

#include <doctest/doctest.h>

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.hpp"
#include "support/stderr_capture.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/defer.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

namespace asio = boost::asio;

namespace {

ctxpool::context_var<std::string> request_id{"request_id"};
ctxpool::context_var<int> counter{"counter", 0};

ctxpool::thread_local_var<std::string> auth_token{"auth_token"};
ctxpool::thread_local_var<int> connection{"connection", ctxpool::lifetime::thread};
ctxpool::local_stack<int> request_stack{"request_stack"};

thread_local std::string legacy_user;  // a plain thread_local the test cannot wrap

using ctxpool_test::capture_stderr;

}  // namespace

TEST_CASE("submit runs the task in the submitter's context and returns its result") {
  ctxpool::thread_pool pool{2};
  auto tok = request_id.set("r1");
  CHECK(pool.submit([] { return request_id.get(); }).get() == "r1");
  request_id.reset(tok);
  // The snapshot was taken at submit: a set after submit is not seen.
  auto tok2 = request_id.set("before");
  std::promise<void> gate;
  auto gated = pool.submit([f = gate.get_future().share()] {
    f.wait();
    return request_id.get();
  });
  auto tok3 = request_id.set("after");
  gate.set_value();
  CHECK(gated.get() == "before");
  request_id.reset(tok3);
  request_id.reset(tok2);
}

TEST_CASE("post runs the task in the submitter's context") {
  ctxpool::thread_pool pool{2};
  ctxpool::set_scope scope(request_id, "posted");
  std::promise<std::string> seen;
  pool.post([&seen] { seen.set_value(request_id.get()); });
  CHECK(seen.get_future().get() == "posted");
}

TEST_CASE("a task's sets never reach the submitter or a sibling") {
  ctxpool::thread_pool pool{4};
  ctxpool::set_scope scope(counter, 7);
  std::vector<std::future<int>> results;
  for (int i = 0; i < 200; ++i) {
    results.push_back(pool.submit([i] {
      const int inherited = counter.get();
      auto tok = counter.set(1000 + i);
      std::this_thread::yield();
      const int mine = counter.get();
      // The token is never reset: the task's context simply ends.
      (void)tok;
      return inherited == 7 && mine == 1000 + i ? 1 : 0;
    }));
  }
  int ok = 0;
  for (auto& r : results) ok += r.get();
  CHECK(ok == 200);
  CHECK(counter.get() == 7);
}

TEST_CASE("a token set by the submitter cannot be reset inside a submitted task") {
  ctxpool::thread_pool pool{1};
  auto tok = request_id.set("outer");
  auto attempt = pool.submit([&tok] { request_id.reset(tok); });
  CHECK_THROWS_AS(attempt.get(), ctxpool::token_error);
  request_id.reset(tok);
}

TEST_CASE("a handler run through the executor continues its scheduler's context") {
  // Unlike submit/post, Asio handlers continue the logical context that
  // scheduled them: a token made there can be reset inside, and the reset
  // stays inside the handler.
  ctxpool::thread_pool pool{1};
  ctxpool::context scheduler;  // keeps this test's set out of the thread's base context
  scheduler.run([&pool] {
    auto tok = request_id.set("scheduler");
    std::promise<std::string> after_reset;
    asio::post(pool.get_executor(), [&] {
      try {
        request_id.reset(tok);
        after_reset.set_value(request_id.get_or("unset"));
      } catch (const ctxpool::token_error& e) {
        after_reset.set_value(std::string("token_error: ") + e.what());
      }
    });
    CHECK(after_reset.get_future().get() == "unset");
    CHECK(request_id.get() == "scheduler");  // the scheduler's own context is untouched
  });
}

TEST_CASE("a worker thread starts in an empty context whatever thread created the pool") {
  ctxpool::set_scope scope(request_id, "creator");
  // Without propagation a task runs in the worker's own context, which is
  // what this shows.
  ctxpool::detail::tuned_thread_pool pool{ctxpool::thread_pool_options{1, "ctxpool-", {}},
                                          ctxpool::detail::pool_tuning{false, true}};
  std::promise<std::size_t> size;
  pool.post([&size] { size.set_value(ctxpool::copy_context().size()); });
  CHECK(size.get_future().get() == 0);
}

TEST_CASE("submit and post accept move-only callables") {
  ctxpool::thread_pool pool{2};
  auto value = std::make_unique<int>(42);
  CHECK(pool.submit([v = std::move(value)] { return *v; }).get() == 42);
  std::promise<int> got;
  pool.post([v = std::make_unique<int>(7), &got] { got.set_value(*v); });
  CHECK(got.get_future().get() == 7);
}

TEST_CASE("lifetime::task slots are wiped after a task returns and after it throws") {
  ctxpool::thread_pool pool{1};  // one worker: every task reuses the same thread
  pool.submit([] {
    auth_token.set("secret-of-task-1");
    request_stack.push(1);
  }).get();
  CHECK_FALSE(pool.submit([] { return auth_token.has_value(); }).get());
  CHECK(pool.submit([] { return request_stack.size(); }).get() == 0);

  auto failing = pool.submit([] {
    auth_token.set("secret-of-failing-task");
    throw std::runtime_error("boom");
  });
  CHECK_THROWS_AS(failing.get(), std::runtime_error);
  CHECK_FALSE(pool.submit([] { return auth_token.has_value(); }).get());
}

TEST_CASE("lifetime::thread slots survive across tasks on the same worker") {
  ctxpool::thread_pool pool{1};
  pool.submit([] { connection.set(99); }).get();
  CHECK(pool.submit([] { return connection.value_or(-1); }).get() == 99);
}

TEST_CASE("a watched plain thread_local is restored after each task") {
  auto watch = ctxpool::watch_thread_local("legacy_user", []() -> std::string& { return legacy_user; });
  ctxpool::thread_pool pool{1};
  pool.submit([] { legacy_user = "alice"; }).get();
  CHECK(pool.submit([] { return legacy_user; }).get().empty());
}

TEST_CASE("a task's exception reaches its future") {
  ctxpool::thread_pool pool{2};
  auto f = pool.submit([]() -> int { throw std::invalid_argument("bad input"); });
  CHECK_THROWS_WITH_AS(f.get(), "bad input", std::invalid_argument);
}

TEST_CASE("a posted task's exception goes to the installed handler with its submit site") {
  ctxpool::thread_pool pool{2};
  std::promise<std::pair<std::string, unsigned>> reported;
  pool.set_exception_handler([&reported](std::exception_ptr error, const ctxpool::task_info& info) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      reported.set_value({e.what(), static_cast<unsigned>(info.submit_site.line())});
    }
  });
  const unsigned line = __LINE__ + 1;
  pool.post([] { throw std::runtime_error("posted failure"); });
  const auto [what, reported_line] = reported.get_future().get();
  CHECK(what == "posted failure");
  CHECK(reported_line == line);
  // The pool keeps working after a task threw.
  CHECK(pool.submit([] { return 5; }).get() == 5);
}

TEST_CASE("the default exception handler prints the exception and the submit site") {
  std::string output = capture_stderr([] {
    ctxpool::thread_pool pool{1};
    pool.post([] { throw std::runtime_error("nobody catches me"); });
    pool.wait();
    CHECK(pool.submit([] { return 1; }).get() == 1);  // still running
  });
  CHECK(output.find("nobody catches me") != std::string::npos);
  CHECK(output.find("executor_test.cpp") != std::string::npos);
}

TEST_CASE("an exception handler that throws is reported, not propagated") {
  std::string output = capture_stderr([] {
    ctxpool::thread_pool pool{1};
    pool.set_exception_handler([](std::exception_ptr, const ctxpool::task_info&) {
      throw std::logic_error("handler failed too");
    });
    pool.post([] { throw std::runtime_error("first failure"); });
    pool.wait();
    CHECK(pool.submit([] { return 2; }).get() == 2);
  });
  CHECK(output.find("first failure") != std::string::npos);
  CHECK(output.find("handler failed too") != std::string::npos);
  // Reported as the handler's failure, not as a task's or an Asio handler's.
  CHECK(output.find("exception handler installed with thread_pool::set_exception_handler threw "
                    "std::logic_error: handler failed too while handling std::runtime_error: "
                    "first failure from the task submitted at") != std::string::npos);
  CHECK(output.find("executor_test.cpp") != std::string::npos);
  CHECK(output.find("an Asio handler run on the pool threw") == std::string::npos);
}

TEST_CASE("invalid thread counts are rejected with a clear exception") {
  CHECK_THROWS_AS(ctxpool::thread_pool{0}, std::invalid_argument);
  CHECK_THROWS_AS(ctxpool::thread_pool{static_cast<std::size_t>(-1)}, std::invalid_argument);
  ctxpool::thread_pool_options options;
  options.threads = ctxpool::thread_pool::max_threads + 1;
  CHECK_THROWS_AS(ctxpool::thread_pool{options}, std::invalid_argument);
  ctxpool::thread_pool defaulted;
  CHECK(defaulted.thread_count() >= 1);
  CHECK(defaulted.thread_count() == std::max(1U, std::thread::hardware_concurrency()));
}

TEST_CASE("workers are named ctxpool-N, or with the configured prefix") {
  ctxpool::thread_pool pool{2};
  auto name = pool.submit([] {
    char buffer[16] = {};
    pthread_getname_np(pthread_self(), buffer, sizeof buffer);
    return std::string(buffer);
  }).get();
  CHECK((name == "ctxpool-0" || name == "ctxpool-1"));

  ctxpool::thread_pool_options options;
  options.threads = 1;
  options.name_prefix = "io-";
  ctxpool::thread_pool named{options};
  CHECK(named.submit([] {
    char buffer[16] = {};
    pthread_getname_np(pthread_self(), buffer, sizeof buffer);
    return std::string(buffer);
  }).get() == "io-0");
}

namespace {

/// Records the events it sees, checking what each hook promises.
class recording_observer : public ctxpool::task_observer {
 public:
  void on_thread_start(std::size_t index) noexcept override { add("start " + std::to_string(index)); }
  void on_thread_stop(std::size_t index) noexcept override { add("stop " + std::to_string(index)); }
  void on_task_begin(const ctxpool::task_info& info) noexcept override {
    // Inside the task's context, before the function.
    add("begin " + request_id.get_or("-") + " line " + std::to_string(info.submit_site.line()));
  }
  void on_task_end(const ctxpool::task_info&) noexcept override {
    // After the wipe: the task's slot is empty again.
    add(std::string("end wiped=") + (auth_token.has_value() ? "no" : "yes"));
  }
  std::vector<std::string> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  void add(std::string event) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  std::mutex mutex_;
  std::vector<std::string> events_;
};

}  // namespace

TEST_CASE("observers see thread start/stop and task begin/end in order") {
  recording_observer observer;
  {
    ctxpool::thread_pool_options options;
    options.threads = 1;
    options.observers = {&observer};
    ctxpool::thread_pool pool{options};
    ctxpool::set_scope scope(request_id, "obs");
    const auto line = __LINE__ + 1;
    pool.submit([] { auth_token.set("x"); }).get();
    pool.join();
    const std::vector<std::string> expected = {
        "start 0", "begin obs line " + std::to_string(line), "end wiped=yes", "stop 0"};
    CHECK(observer.events() == expected);
  }
}

TEST_CASE("observers see a task dispatched inline from a worker nested in its parent") {
  recording_observer observer;
  ctxpool::thread_pool_options options;
  options.threads = 1;
  options.observers = {&observer};
  ctxpool::thread_pool pool{options};
  auto executor = pool.get_executor();
  pool.submit([executor] {
    bool inner_ran = false;
    asio::dispatch(executor, [&inner_ran] { inner_ran = true; });
    CHECK(inner_ran);  // dispatch from a worker runs inline
  }).get();
  pool.join();
  const auto events = observer.events();
  REQUIRE(events.size() == 6);
  CHECK(events[1].starts_with("begin"));
  CHECK(events[2].starts_with("begin"));
  CHECK(events[3].starts_with("end"));
  CHECK(events[4].starts_with("end"));
}

TEST_CASE("stats report threads, queued, running and completed tasks") {
  ctxpool::thread_pool pool{1};
  std::promise<void> release;
  std::promise<void> started;
  auto blocker = pool.submit([&started, gate = release.get_future()] {
    started.set_value();
    gate.wait();
  });
  started.get_future().wait();
  std::vector<std::future<void>> queued;
  for (int i = 0; i < 3; ++i) queued.push_back(pool.submit([] {}));
  auto busy = pool.stats();
  CHECK(busy.threads == 1);
  CHECK(busy.running == 1);
  CHECK(busy.queued == 3);
  release.set_value();
  pool.wait();
  auto idle = pool.stats();
  CHECK(idle.running == 0);
  CHECK(idle.queued == 0);
  CHECK(idle.completed == 4);
  CHECK(pool.tasks_queued() == 0);
  CHECK(pool.tasks_running() == 0);
  CHECK(pool.tasks_completed() == 4);
  CHECK(pool.thread_count() == 1);
}

TEST_CASE("asio::post, dispatch and defer through the executor propagate the context") {
  ctxpool::thread_pool pool{2};
  auto executor = pool.get_executor();
  ctxpool::set_scope scope(request_id, "asio");
  std::promise<std::string> posted, dispatched, deferred;
  asio::post(executor, [&] { posted.set_value(request_id.get()); });
  asio::dispatch(executor, [&] { dispatched.set_value(request_id.get()); });
  asio::defer(executor, [&] { deferred.set_value(request_id.get()); });
  CHECK(posted.get_future().get() == "asio");
  CHECK(dispatched.get_future().get() == "asio");
  CHECK(deferred.get_future().get() == "asio");
}

TEST_CASE("a handler's sets do not leak into the next handler on the same worker") {
  ctxpool::thread_pool pool{1};
  auto executor = pool.get_executor();
  std::promise<void> first_done;
  asio::post(executor, [&] {
    auto tok = request_id.set("handler-1");
    (void)tok;
    auth_token.set("handler-1-secret");
    first_done.set_value();
  });
  first_done.get_future().wait();
  std::promise<std::pair<std::string, bool>> second;
  asio::post(executor, [&] { second.set_value({request_id.get_or("unset"), auth_token.has_value()}); });
  const auto [value, has_token] = second.get_future().get();
  CHECK(value == "unset");
  CHECK_FALSE(has_token);
}

TEST_CASE("a strand runs each handler in the context of the code that posted it") {
  ctxpool::thread_pool pool{2};
  auto strand = asio::make_strand(pool.get_executor());
  std::atomic<int> mismatches{0};
  std::atomic<int> ran{0};
  std::promise<void> release;
  auto gate = release.get_future().share();
  // Keep the strand busy so that later handlers queue behind the first.
  asio::post(strand, [gate] { gate.wait(); });
  for (int i = 0; i < 100; ++i) {
    ctxpool::set_scope scope(counter, i);
    asio::post(strand, [i, &mismatches, &ran] {
      if (counter.get() != i) ++mismatches;
      auto tok = counter.set(-1);  // must not reach the next handler
      (void)tok;
      ++ran;
    });
  }
  release.set_value();
  pool.wait();
  CHECK(ran == 100);
  CHECK(mismatches == 0);
}

TEST_CASE("a strand of the pool serialises its handlers and answers Asio's queries") {
  ctxpool::thread_pool pool{2};
  auto strand = asio::make_strand(pool.get_executor());
  static_assert(asio::execution::is_executor<decltype(strand)>::value);
  asio::any_io_executor any = strand;  // what a coroutine on the strand holds
  (void)any;
  CHECK(strand == strand);
  CHECK(strand != asio::make_strand(pool.get_executor()));
  CHECK(&asio::query(strand, asio::execution::context) ==
        &asio::query(pool.get_executor(), asio::execution::context));
  std::optional tracked = asio::prefer(strand, asio::execution::outstanding_work.tracked);
  CHECK(asio::query(*tracked, asio::execution::outstanding_work) ==
        asio::execution::outstanding_work.tracked);
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> not_in_strand{0};
  for (int i = 0; i < 2000; ++i) {
    asio::post(i % 2 == 0 ? strand : *tracked, [&] {
      if (inside.fetch_add(1) != 0) ++overlaps;
      if (!strand.running_in_this_thread()) ++not_in_strand;
      inside.fetch_sub(1);
    });
  }
  tracked.reset();  // a tracked executor is outstanding work: wait() would wait for it
  pool.wait();
  CHECK(overlaps == 0);
  CHECK(not_in_strand == 0);
  CHECK_FALSE(strand.running_in_this_thread());
}

TEST_CASE("the executor satisfies Asio's executor concept and queries") {
  ctxpool::thread_pool pool{3};
  auto executor = pool.get_executor();
  static_assert(asio::execution::is_executor<ctxpool::thread_pool::executor_type>::value);
  asio::any_io_executor any = executor;  // the type every Asio I/O object takes
  CHECK(&asio::query(executor, asio::execution::context) ==
        &asio::query(any, asio::execution::context));
  CHECK(asio::query(executor, asio::execution::blocking) == asio::execution::blocking.possibly);
  auto never = asio::require(executor, asio::execution::blocking.never);
  CHECK(asio::query(never, asio::execution::blocking) == asio::execution::blocking.never);
  CHECK(asio::query(executor, asio::execution::outstanding_work) ==
        asio::execution::outstanding_work.untracked);
  auto tracked = asio::prefer(executor, asio::execution::outstanding_work.tracked);
  CHECK(asio::query(tracked, asio::execution::outstanding_work) ==
        asio::execution::outstanding_work.tracked);
  CHECK(asio::query(asio::require(executor, asio::execution::relationship.continuation),
                    asio::execution::relationship) == asio::execution::relationship.continuation);
  CHECK(asio::query(executor, asio::execution::occupancy) == 3);
  CHECK(executor == pool.get_executor());
  CHECK(executor != never);
  CHECK_FALSE(executor.running_in_this_thread());
  CHECK(pool.submit([executor] { return executor.running_in_this_thread(); }).get());
}

TEST_CASE("a tracked executor carries the context it was made in") {
  ctxpool::thread_pool pool{2};
  std::optional<decltype(asio::prefer(pool.get_executor(), asio::execution::outstanding_work.tracked))>
      tracked;
  {
    ctxpool::set_scope scope(request_id, "captured-at-prefer");
    tracked.emplace(asio::prefer(pool.get_executor(), asio::execution::outstanding_work.tracked));
  }
  ctxpool::set_scope later(request_id, "current-at-execute");
  std::promise<std::string> seen;
  asio::post(*tracked, [&seen] { seen.set_value(request_id.get()); });
  CHECK(seen.get_future().get() == "captured-at-prefer");
  tracked.reset();
}

TEST_CASE("a steady_timer on the pool's executor completes in the context that started the wait") {
  ctxpool::thread_pool pool{2};
  asio::steady_timer timer(pool.get_executor(), std::chrono::milliseconds(5));
  std::promise<std::string> seen;
  {
    ctxpool::set_scope scope(request_id, "timer-waiter");
    timer.async_wait([&seen](boost::system::error_code) { seen.set_value(request_id.get()); });
  }
  CHECK(seen.get_future().get() == "timer-waiter");
}

TEST_CASE("bind_context runs a handler on a foreign io_context in the bound context") {
  asio::io_context foreign;
  auto work = asio::make_work_guard(foreign);
  std::thread runner([&foreign] { foreign.run(); });

  std::promise<std::string> seen;
  std::promise<std::string> unbound;
  {
    ctxpool::set_scope scope(request_id, "bound");
    asio::post(foreign, ctxpool::bind_context([&seen] { seen.set_value(request_id.get()); }));
    asio::post(foreign, [&unbound] { unbound.set_value(request_id.get_or("foreign-thread")); });
  }
  CHECK(seen.get_future().get() == "bound");
  CHECK(unbound.get_future().get() == "foreign-thread");

  // A timer completion: the handler's own sets stay in the handler.
  asio::steady_timer timer(foreign, std::chrono::milliseconds(1));
  std::promise<std::string> timer_seen;
  auto tok = request_id.set("timer-bound");
  timer.async_wait(ctxpool::bind_context([&timer_seen, &tok](boost::system::error_code) {
    request_id.reset(tok);  // a continuation: the binder's token is valid here
    timer_seen.set_value(request_id.get_or("reset"));
  }));
  CHECK(timer_seen.get_future().get() == "reset");
  CHECK(request_id.get_or("x") == "timer-bound");  // the caller's context is untouched
  work.reset();
  runner.join();
}

TEST_CASE("bind_context keeps the handler's associated executor and allocator") {
  asio::io_context foreign;
  auto strand = asio::make_strand(foreign);
  auto bound = ctxpool::bind_context(asio::bind_executor(strand, [] {}));
  CHECK(asio::get_associated_executor(bound) == strand);
  auto plain = ctxpool::bind_context([] {});
  CHECK(asio::get_associated_executor(plain, foreign.get_executor()) == foreign.get_executor());
  static_assert(std::is_same_v<asio::associated_allocator_t<decltype(plain)>, std::allocator<void>>);
}

// Task blocks freed by workers are recycled to submitters by size class; a
// block must serve any task of its class. Tasks whose captures differ by 8
// bytes (so that neighbours share a class) interleave here, each checking its
// own capture: a block reused for a larger task than it was allocated for is
// written past its end, which TSan reports (it did, before small_alloc rounded
// every block up to its class).
template <std::size_t N>
void post_checked(ctxpool::thread_pool& pool, char fill, std::atomic<int>& corrupted,
                  std::latch& done) {
  std::array<char, N> capture{};
  capture.fill(fill);
  pool.post([capture, fill, &corrupted, &done] {
    for (char c : capture) corrupted += c != fill;
    done.count_down();
  });
}

TEST_CASE("tasks of different sizes reuse recycled blocks without overlapping") {
  ctxpool::thread_pool pool{2};
  std::atomic<int> corrupted{0};
  constexpr int rounds = 20000;
  std::latch done(4 * rounds);
  for (int i = 0; i < rounds; ++i) {
    const auto fill = static_cast<char>(i);
    post_checked<1>(pool, fill, corrupted, done);
    post_checked<9>(pool, fill, corrupted, done);
    post_checked<17>(pool, fill, corrupted, done);
    post_checked<25>(pool, fill, corrupted, done);
  }
  done.wait();
  pool.wait();
  CHECK(corrupted == 0);
}

TEST_CASE("submit(f, args...) and post(f, args...) pass arguments as std::async does") {
  ctxpool::thread_pool pool{2};
  CHECK(pool.submit([](int a, int b) { return a * b; }, 6, 7).get() == 42);
  CHECK(pool.submit([](std::string s, char c, int n, std::string t) { return s + std::string(n, c) + t; },
                    std::string("a"), 'b', 3, "c")
            .get() == "abbbc");
  // Arguments are decay-copied (a later change to the original is not seen)
  // unless passed with std::ref, and move-only arguments are moved in.
  int shared = 1;
  std::promise<void> gate;
  auto copied = pool.submit([](int v, std::shared_future<void> g) { g.wait(); return v; }, shared,
                            gate.get_future().share());
  shared = 2;
  gate.set_value();
  CHECK(copied.get() == 1);
  int target = 0;
  pool.submit([](int& out, int v) { out = v; }, std::ref(target), 5).get();
  CHECK(target == 5);
  CHECK(pool.submit([](std::unique_ptr<int> p) { return *p; }, std::make_unique<int>(9)).get() == 9);

  std::promise<int> posted;
  std::future<int> posted_value = posted.get_future();
  pool.post([](std::promise<int> p, int v) { p.set_value(v); }, std::move(posted), 11);
  CHECK(posted_value.get() == 11);
}

TEST_CASE("submit and post with arguments record the caller's submit site, and a wrapper can pass its own caller's") {
  ctxpool::thread_pool pool{1};
  std::mutex lock;
  std::vector<std::source_location> sites;
  pool.set_exception_handler([&](std::exception_ptr, const ctxpool::task_info& info) {
    std::lock_guard guard(lock);
    sites.push_back(info.submit_site);
  });
  auto fail = [](int) { throw std::runtime_error("x"); };
  const std::uint_least32_t line = std::source_location::current().line();
  pool.post(fail, 1);  // line + 1
  auto wrapper = [&pool, &fail](std::source_location where = std::source_location::current()) {
    pool.post_at(where, fail, 2);
  };
  wrapper();  // line + 5
  pool.wait();
  REQUIRE(sites.size() == 2);
  CHECK(sites[0].line() == line + 1);
  CHECK(sites[1].line() == line + 5);
  CHECK(std::string(sites[0].file_name()).find("executor_test.cpp") != std::string::npos);
  // submit's future carries the exception; its site is the caller's too.
  CHECK_THROWS_AS(pool.submit(fail, 3).get(), std::runtime_error);
}

namespace {

/// A value whose destructor throws: a bug the wipe must name, not hide.
struct throws_on_destruction {
  bool armed = true;
  throws_on_destruction() = default;
  throws_on_destruction(const throws_on_destruction&) = default;
  throws_on_destruction(throws_on_destruction&& other) noexcept : armed(other.armed) {
    other.armed = false;
  }
  throws_on_destruction& operator=(const throws_on_destruction&) = default;
  throws_on_destruction& operator=(throws_on_destruction&& other) noexcept {
    armed = std::exchange(other.armed, false);
    return *this;
  }
  ~throws_on_destruction() noexcept(false) {
    if (armed) throw std::runtime_error("destructor threw");
  }
};

}  // namespace

TEST_CASE("a slot value whose destructor throws during the wipe terminates with a message naming the slot") {
  // In a child process (forked while this test process has no other thread),
  // whose output the parent reads.
  ctxpool_test::scratch_dir dir;
  const auto result = ctxpool_test::run_forked(
      [] {
        static ctxpool::thread_local_var<throws_on_destruction> risky{"risky_slot"};
        ctxpool::thread_pool pool{1};
        pool.post([] { risky.set(throws_on_destruction{}); });
        pool.wait();
      },
      dir);
  CHECK(result.term_signal != 0);
  INFO("child's output: ", result.err);
  CHECK(result.err.find("thread-local slot 'risky_slot'") != std::string::npos);
  CHECK(result.err.find("threw from its destructor while being wiped") != std::string::npos);
}
