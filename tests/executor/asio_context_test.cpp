// The pool as an Asio execution context, used as asio::thread_pool is: post,
// dispatch and defer on the pool itself, make_strand(pool), timers and
// sockets built from the pool, co_spawn(pool, ...), and services. Written in
// the style of Asio's own thread_pool_test and service_test.
#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/defer.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

ctxpool::context_var<std::string> request_id{"request_id"};

/// A user-defined service keyed by its type, as in Asio's service_test.
class counting_service : public asio::execution_context::service {
 public:
  using key_type = counting_service;
  static inline asio::execution_context::id id;
  explicit counting_service(asio::execution_context& owner)
      : asio::execution_context::service(owner) {
    ++constructed;
  }
  void shutdown() override { shut_down = true; }
  static inline std::atomic<int> constructed{0};
  std::atomic<bool> shut_down{false};
  std::atomic<int> uses{0};
};

/// A service with no default lookup, added with make_service.
class made_service : public asio::execution_context::service {
 public:
  static inline asio::execution_context::id id;
  made_service(asio::execution_context& owner, int initial)
      : asio::execution_context::service(owner), value(initial) {}
  void shutdown() override {}
  int value;
};

/// Counts handlers that overlap: only a serialising executor keeps it at zero.
struct overlap_probe {
  int unguarded = 0;  // only the serialisation protects it: TSan checks the claim
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  void operator()() {
    if (++inside != 1) ++overlaps;
    ++unguarded;
    --inside;
  }
};

/// Posts `count` probes through each executor, each from a thread of its
/// own, then waits for the pool to run them.
template <class... Executors>
void post_probes(ctxpool::thread_pool& pool, overlap_probe& probe, int count,
                 const Executors&... executors) {
  std::thread posters[] = {std::thread([&probe, count, ex = executors] {
    for (int i = 0; i < count; ++i) asio::post(ex, [&probe] { probe(); });
  })...};
  for (auto& t : posters) t.join();
  pool.wait();
}

}  // namespace

TEST_CASE("the pool is an Asio execution context: post, dispatch and defer on the pool") {
  static_assert(std::is_base_of_v<asio::execution_context, ctxpool::thread_pool>);
  ctxpool::thread_pool pool{2};
  ctxpool::set_scope scope(request_id, "caller");
  std::atomic<int> count{0};
  std::promise<std::string> seen;
  asio::post(pool, [&] {
    ++count;
    seen.set_value(request_id.get());
  });
  asio::dispatch(pool, [&] { ++count; });
  asio::defer(pool, [&] { ++count; });
  CHECK(seen.get_future().get() == "caller");  // handlers carry the caller's context
  pool.wait();
  CHECK(count == 3);
}

TEST_CASE("query(execution::context) is the pool, directly and through any_io_executor") {
  ctxpool::thread_pool pool{1};
  CHECK(&asio::query(pool.get_executor(), asio::execution::context) == &pool);
  asio::any_io_executor any = pool.get_executor();
  CHECK(&asio::query(any, asio::execution::context) == &pool);
  auto strand = asio::make_strand(pool);
  CHECK(&asio::query(strand, asio::execution::context) == &pool);
}

TEST_CASE("make_strand(pool) serialises handlers posted from many threads") {
  ctxpool::thread_pool pool{4};
  auto strand = asio::make_strand(pool);
  static_assert(std::is_same_v<decltype(strand), asio::strand<ctxpool::pool_executor>>);
  overlap_probe probe;
  post_probes(pool, probe, 500, strand, strand, strand, strand);
  CHECK(probe.overlaps == 0);
  CHECK(probe.unguarded == 2000);
}

TEST_CASE("a steady_timer built from the pool expires and completes on a worker") {
  ctxpool::thread_pool pool{2};
  asio::steady_timer timer(pool, 5ms);
  std::promise<bool> on_worker;
  timer.async_wait([&](boost::system::error_code ec) {
    on_worker.set_value(!ec && pool.running_in_this_thread());
  });
  CHECK(on_worker.get_future().get());
}

TEST_CASE("co_spawn(pool, ...) runs the coroutine on the pool") {
  ctxpool::thread_pool pool{2};
  ctxpool::set_scope scope(request_id, "spawner");
  auto result = asio::co_spawn(
      pool,
      [&pool]() -> asio::awaitable<std::string> {
        asio::steady_timer timer(pool, 1ms);
        co_await timer.async_wait(asio::use_awaitable);
        co_return request_id.get() + (pool.running_in_this_thread() ? "@pool" : "@elsewhere");
      },
      asio::use_future);
  CHECK(result.get() == "spawner@pool");
}

TEST_CASE("use_service, has_service and make_service work on the pool") {
  const int before = counting_service::constructed;
  counting_service* service = nullptr;
  {
    ctxpool::thread_pool pool{1};
    CHECK_FALSE(asio::has_service<counting_service>(pool));
    counting_service& first = asio::use_service<counting_service>(pool);
    counting_service& again = asio::use_service<counting_service>(pool);
    CHECK(&first == &again);
    CHECK(asio::has_service<counting_service>(pool));
    CHECK(counting_service::constructed == before + 1);
    CHECK(&first.context() == &pool);
    service = &first;

    made_service& made = asio::make_service<made_service>(pool, 42);
    CHECK(made.value == 42);
    CHECK(asio::has_service<made_service>(pool));
    CHECK_THROWS_AS(asio::make_service<made_service>(pool, 7), asio::service_already_exists);

    // A service is reachable from a handler through the executor's context.
    std::promise<bool> found;
    asio::post(pool, [&found, ex = pool.get_executor()] {
      auto& ctx = asio::query(ex, asio::execution::context);
      asio::use_service<counting_service>(ctx).uses++;
      found.set_value(asio::has_service<counting_service>(ctx));
    });
    CHECK(found.get_future().get());
    CHECK(service->uses == 1);
  }
  (void)service;  // destroyed with the pool; only its construction count remains
  CHECK(counting_service::constructed == before + 1);
}

TEST_CASE(
    "strand<pool_executor> converts to strand<any_io_executor> by construction and assignment") {
  using pool_strand = asio::strand<ctxpool::pool_executor>;
  using any_strand = asio::strand<asio::any_io_executor>;
  static_assert(std::is_constructible_v<any_strand, const pool_strand&>);
  static_assert(std::is_constructible_v<any_strand, pool_strand&&>);
  static_assert(std::is_assignable_v<any_strand&, const pool_strand&>);
  static_assert(std::is_assignable_v<any_strand&, pool_strand&&>);

  ctxpool::thread_pool pool{4};
  pool_strand strand = asio::make_strand(pool);
  any_strand copied(strand);
  any_strand moved(pool_strand{strand});
  asio::io_context other;
  any_strand assigned = asio::make_strand(other);
  assigned = strand;
  any_strand move_assigned = asio::make_strand(other);
  move_assigned = pool_strand{strand};
  CHECK(&asio::query(copied, asio::execution::context) == &pool);
  CHECK(&asio::query(assigned, asio::execution::context) == &pool);

  // All of them share the original's queue: handlers given to any of them
  // never overlap.
  overlap_probe probe;
  post_probes(pool, probe, 300, strand, copied, assigned, move_assigned, moved);
  CHECK(probe.overlaps == 0);
  CHECK(probe.unguarded == 1500);
}

TEST_CASE(
    "a tracked strand answers outstanding_work.tracked, directly and through any_io_executor") {
  ctxpool::thread_pool pool{1};
  auto strand = asio::make_strand(pool);
  CHECK(asio::query(strand, asio::execution::outstanding_work) ==
        asio::execution::outstanding_work.untracked);
  auto tracked = asio::prefer(strand, asio::execution::outstanding_work.tracked);
  CHECK(asio::query(tracked, asio::execution::outstanding_work) ==
        asio::execution::outstanding_work.tracked);
  CHECK(asio::query(tracked, asio::execution::outstanding_work.tracked) ==
        asio::execution::outstanding_work.tracked);
  CHECK(tracked == strand);  // the same queue

  asio::any_io_executor any_tracked = tracked;
  CHECK(asio::query(any_tracked, asio::execution::outstanding_work.tracked) ==
        asio::execution::outstanding_work.tracked);
  asio::any_io_executor any_untracked = strand;
  CHECK(asio::query(any_untracked, asio::execution::outstanding_work.tracked) ==
        asio::execution::outstanding_work.untracked);

  auto untracked = asio::prefer(tracked, asio::execution::outstanding_work.untracked);
  CHECK(asio::query(untracked, asio::execution::outstanding_work) ==
        asio::execution::outstanding_work.untracked);
}
