// Tests of thread_pool::submit and post (<ctxpool/executor.hpp>): the task
// runs in a fresh copy of the submitter's context, its sets stay in it,
// arguments pass as with std::async, the submit site is recorded, and task
// blocks are recycled safely.
#include <ctxpool/executor.hpp>
#include <ctxpool/detail/tuned_pool.hpp>

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <source_location>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

ctxpool::context_var<std::string> request_id{"request_id"};
ctxpool::context_var<int> counter{"counter", 0};

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
  CHECK(pool.submit([](std::string s, char c, int n,
                       std::string t) { return s + std::string(n, c) + t; },
                    std::string("a"), 'b', 3, "c")
            .get() == "abbbc");
  // Arguments are decay-copied (a later change to the original is not seen)
  // unless passed with std::ref, and move-only arguments are moved in.
  int shared = 1;
  std::promise<void> gate;
  auto copied = pool.submit(
      [](int v, std::shared_future<void> g) {
        g.wait();
        return v;
      },
      shared, gate.get_future().share());
  shared = 2;
  gate.set_value();
  CHECK(copied.get() == 1);
  int target = 0;
  pool.submit([](int& out, int v) { out = v; }, std::ref(target), 5).get();
  CHECK(target == 5);
  CHECK(pool.submit([](std::unique_ptr<int> p) { return *p; }, std::make_unique<int>(9)).get() ==
        9);

  std::promise<int> posted;
  std::future<int> posted_value = posted.get_future();
  pool.post([](std::promise<int> p, int v) { p.set_value(v); }, std::move(posted), 11);
  CHECK(posted_value.get() == 11);
}

TEST_CASE(
    "submit and post with arguments record the caller's submit site, and a wrapper can pass its own caller's") {
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
  CHECK(std::string(sites[0].file_name()).find("submit_test.cpp") != std::string::npos);
  // submit's future carries the exception; its site is the caller's too.
  CHECK_THROWS_AS(pool.submit(fail, 3).get(), std::runtime_error);
}
