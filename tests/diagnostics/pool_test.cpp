// The detector driven by ctxpool::thread_pool: task ids and submit sites from
// the pool, Asio posts, coroutines and strands, thread start hooks.
#include <ctxpool/diagnostics.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <ctxpool/context.hpp>
#include <ctxpool/diagnostics/doctest.hpp>
#include <ctxpool/executor.hpp>
#include <ctxpool/thread_local.hpp>

#include "support.hpp"

namespace asio = boost::asio;
namespace diag = ctxpool::diagnostics;
using ctxpool_test::detection_session;
using namespace std::chrono_literals;

namespace {

ctxpool::thread_local_var<std::string> auth_token{"auth_token"};
ctxpool::thread_local_var<int> worker_cache{"worker_cache", ctxpool::lifetime::thread};
ctxpool::thread_local_var<std::string> worker_name{"worker_name"};
ctxpool::context_var<std::string> request_id{"request_id"};

/// A thread start hook that writes a lifetime::task slot before any task.
class naming_observer final : public ctxpool::task_observer {
 public:
  void on_thread_start(std::size_t index) noexcept override {
    worker_name.set("worker-" + std::to_string(index));
  }
};

asio::awaitable<void> handle_request(int n) {
  // Each step writes the thread-locals it reads; the request id, which must
  // survive co_await, lives in a context_var.
  auto token = request_id.set("req-" + std::to_string(n));
  for (int step = 0; step < 3; ++step) {
    auth_token.set("token-" + std::to_string(n));
    CHECK(auth_token.value() == "token-" + std::to_string(n));
    asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
    co_await timer.async_wait(asio::use_awaitable);  // may resume on another worker
    CHECK(request_id.get() == "req-" + std::to_string(n));
    co_await asio::post(asio::use_awaitable);
  }
  request_id.reset(token);
}

}  // namespace

TEST_CASE("thread_pool: a stale read names both tasks' submit sites") {
  detection_session session;
  ctxpool::thread_pool pool{1};
  const int write_line = __LINE__ + 1;
  pool.submit([] { auth_token.set("alice"); }).get();
  bool seen = true;
  const int read_line = __LINE__ + 1;
  pool.submit([&] { seen = auth_token.has_value(); }).get();
  pool.join();
  CHECK_FALSE(seen);
  const auto found = diag::findings();
  REQUIRE(found.size() == 1);
  const auto& f = found.front();
  CHECK(f.kind == diag::finding_kind::stale_read);
  CHECK(f.variable == "auth_token");
  CHECK(static_cast<int>(f.writer.submit_site.line()) == write_line);
  CHECK(static_cast<int>(f.task.submit_site.line()) == read_line);
  CHECK(f.writer.id != 0);
  CHECK(f.task.id > f.writer.id);
  CHECK(f.worker == 0);
  CHECK_FALSE(f.same_context);
}

TEST_CASE(
    "thread_pool: handlers posted through the Asio executor from one context are still caught") {
  detection_session session;
  ctxpool::thread_pool pool{1};
  auto token = request_id.set("main");  // gives this thread a context lineage
  asio::post(pool.get_executor(), [] { auth_token.set("alice"); });
  asio::post(pool.get_executor(), [] { (void)auth_token.has_value(); });
  pool.join();
  request_id.reset(token);
  const auto found = diag::findings();
  REQUIRE(found.size() == 1);
  CHECK(found.front().same_context);  // both continue this thread's context
}

TEST_CASE("thread_pool: an inline dispatch is a nested task, attributed as such") {
  detection_session session;
  ctxpool::thread_pool pool{1};
  pool.submit([&] {
        // Runs inline on this worker: a task nested in this one.
        asio::dispatch(pool.get_executor(), [] { auth_token.set("inner"); });
        CHECK_FALSE(auth_token.has_value());  // wiped when the inner task ended
      })
      .get();
  pool.join();
  const auto found = diag::findings();
  REQUIRE(found.size() == 1);
  CHECK(found.front().writer.id != 0);
  CHECK(found.front().task.id != 0);
  CHECK(found.front().writer.id != found.front().task.id);
  CHECK(found.front().tasks_between == 0);
}

TEST_CASE("thread_pool: no false positive for coroutines resuming on other workers") {
  detection_session session;
  ctxpool::thread_pool pool{2};
  std::vector<std::future<void>> done;
  for (int n = 0; n < 8; ++n) {
    done.push_back(asio::co_spawn(pool.get_executor(), handle_request(n), asio::use_future));
  }
  for (auto& f : done) f.get();
  pool.join();
  CHECK(diag::findings().empty());
}

TEST_CASE("thread_pool: no false positive for strands hopping threads") {
  detection_session session;
  ctxpool::thread_pool pool{2};
  auto strand = asio::make_strand(pool.get_executor());
  std::atomic<int> ok{0};
  for (int n = 0; n < 200; ++n) {
    asio::post(strand, [n, &ok] {
      auth_token.set("t" + std::to_string(n));
      if (auth_token.value() == "t" + std::to_string(n)) ++ok;
    });
  }
  pool.join();
  CHECK(ok == 200);
  CHECK(diag::findings().empty());
}

TEST_CASE("thread_pool: no false positive for values a thread start hook wrote") {
  detection_session session;
  naming_observer naming;
  ctxpool::thread_pool_options options;
  options.threads = 2;
  options.observers = {&naming};
  ctxpool::thread_pool pool{options};
  std::vector<std::future<bool>> named;
  for (int n = 0; n < 20; ++n) {
    named.push_back(pool.submit([] { return worker_name.value_or("").starts_with("worker-"); }));
  }
  for (auto& f : named) CHECK(f.get());
  pool.join();
  CHECK(diag::findings().empty());
}

TEST_CASE("thread_pool: no false positive for lifetime::thread caches and own writes") {
  detection_session session;
  ctxpool::thread_pool pool{2};
  std::vector<std::future<void>> done;
  for (int n = 0; n < 50; ++n) {
    done.push_back(pool.submit([n] {
      if (!worker_cache.has_value()) worker_cache.set(n);
      auth_token.set("mine");
      CHECK(auth_token.value() == "mine");
    }));
  }
  for (auto& f : done) f.get();
  pool.join();
  CHECK(diag::findings().empty());
}

TEST_CASE("thread_pool: the doctest guard passes a clean case") {
  CTXPOOL_CHECK_NO_FINDINGS();
  ctxpool::thread_pool pool{2};
  for (int n = 0; n < 10; ++n) {
    pool.post([] {
      auth_token.set("x");
      (void)auth_token.value();
    });
  }
  pool.join();
}

TEST_CASE("thread_pool: the doctest guard fails a case with a stale read" *
          doctest::should_fail()) {
  CTXPOOL_CHECK_NO_FINDINGS();
  ctxpool::thread_pool pool{1};
  pool.submit([] { auth_token.set("alice"); }).get();
  pool.submit([] { (void)auth_token.has_value(); }).get();
  pool.join();
}
