// Tests of <ctxpool/asio/cancellation.hpp>: a context's cancellation or
// deadline ends Asio operations (a timer wait, a loopback socket read) with
// operation_aborted, reaches a coroutine, and comes from a cancelled group.
#include <ctxpool/asio/cancellation.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <memory>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <ctxpool/cancellation.hpp>
#include <ctxpool/executor.hpp>
#include <ctxpool/task_group.hpp>

#include "support/watchdog.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using error_code = boost::system::error_code;

namespace {

// Every operation here would otherwise wait an hour; the bound turns a
// cancellation that never arrives into a loud failure instead of a hang.
using ctxpool_test::get_within;
using ctxpool_test::hang_bound;

/// A connected loopback pair on `pool`; nothing is ever written, so a read
/// on `server` only ends when it is cancelled.
struct loopback_pair {
  explicit loopback_pair(ctxpool::thread_pool& pool) : server(pool), client(pool) {
    asio::ip::tcp::acceptor acceptor(pool, {asio::ip::address_v4::loopback(), 0});
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
  }
  asio::ip::tcp::socket server;
  asio::ip::tcp::socket client;
};

}  // namespace

TEST_CASE("a deadline in the context ends a timer wait with operation_aborted") {
  ctxpool::thread_pool pool{2};
  asio::steady_timer timer(pool, 1h);
  std::promise<error_code> result;
  ctxpool::cancellation_source request(50ms);
  request.run([&] {
    timer.async_wait(ctxpool::bind_cancellation([&](error_code ec) { result.set_value(ec); }));
  });
  auto future = result.get_future();
  CHECK(get_within(future, "the timer wait") == asio::error::operation_aborted);
  CHECK(request.token().reason() == ctxpool::cancel_reason::deadline);
}

TEST_CASE(
    "cancelling the context's cancellation ends a loopback socket read with operation_aborted") {
  ctxpool::thread_pool pool{2};
  loopback_pair sockets(pool);
  char byte = 0;
  std::promise<error_code> result;
  ctxpool::cancellation_source request;
  request.run([&] {
    sockets.server.async_read_some(
        asio::buffer(&byte, 1),
        ctxpool::bind_cancellation([&](error_code ec, std::size_t) { result.set_value(ec); }));
  });
  request.cancel();
  auto future = result.get_future();
  CHECK(get_within(future, "the socket read") == asio::error::operation_aborted);
}

TEST_CASE("a deadline ends a socket read; an operation started after the end is aborted at once") {
  ctxpool::thread_pool pool{2};
  loopback_pair sockets(pool);
  char byte = 0;
  ctxpool::cancellation_source request(50ms);
  std::promise<error_code> first;
  request.run([&] {
    sockets.server.async_read_some(
        asio::buffer(&byte, 1),
        ctxpool::bind_cancellation([&](error_code ec, std::size_t) { first.set_value(ec); }));
  });
  auto first_result = first.get_future();
  CHECK(get_within(first_result, "the socket read") == asio::error::operation_aborted);
  // Started inside the expired context: it ends without waiting for data.
  std::promise<error_code> second;
  request.run([&] {
    sockets.server.async_read_some(
        asio::buffer(&byte, 1),
        ctxpool::bind_cancellation([&](error_code ec, std::size_t) { second.set_value(ec); }));
  });
  auto second_result = second.get_future();
  CHECK(get_within(second_result, "the second read") == asio::error::operation_aborted);
}

TEST_CASE("without a cancellation in the context the adapted operation completes normally") {
  ctxpool::thread_pool pool{1};
  ctxpool::context{}.run([&] {
    asio::steady_timer timer(pool, 1ms);
    auto future = timer.async_wait(ctxpool::bind_cancellation(asio::use_future));
    REQUIRE(future.wait_for(hang_bound) == std::future_status::ready);
    CHECK_NOTHROW(future.get());
  });
}

TEST_CASE("a coroutine spawned on a strand with the adapter sees cancellation at its co_await") {
  ctxpool::thread_pool pool{2};
  ctxpool::cancellation_source request;
  std::promise<void> waiting;
  struct outcome {
    bool aborted = false;
    bool context_cancelled = false;
    bool next_co_await_threw = false;
  };
  auto coroutine = [&]() -> asio::awaitable<outcome> {
    outcome out;
    asio::steady_timer timer(co_await asio::this_coro::executor, 1h);
    waiting.set_value();
    try {
      co_await timer.async_wait(asio::use_awaitable);  // no adapter here: the coroutine's own
    } catch (const boost::system::system_error& e) {
      out.aborted = e.code() == asio::error::operation_aborted;
    }
    out.context_cancelled = ctxpool::this_task::cancelled();
    try {
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      out.next_co_await_threw = e.code() == asio::error::operation_aborted;
    }
    co_return out;
  };
  auto future = request.run([&] {
    // On a strand: Asio hands the coroutine its cancellation through its
    // executor, which must not run the signal beside a step of it.
    return asio::co_spawn(asio::make_strand(pool), coroutine(),
                          ctxpool::bind_cancellation(asio::use_future));
  });
  auto started = waiting.get_future();
  get_within(started, "the coroutine's start");
  request.cancel();
  const outcome out = get_within(future, "the coroutine");
  CHECK(out.aborted);
  CHECK(out.context_cancelled);
  CHECK(out.next_co_await_threw);
}

TEST_CASE("a cancelled task_group cancels the timer a running child waits on") {
  ctxpool::thread_pool pool{2};
  ctxpool::task_group group{pool};
  std::promise<void> waiting;
  error_code seen;
  group.run([&] {
    asio::steady_timer timer(pool, 1h);
    std::promise<error_code> result;
    timer.async_wait(ctxpool::bind_cancellation([&](error_code ec) { result.set_value(ec); }));
    waiting.set_value();
    auto done = result.get_future();
    seen = get_within(done, "the child's timer wait");
  });
  auto started = waiting.get_future();
  get_within(started, "the child's timer wait");
  group.cancel();
  CHECK(group.wait() == ctxpool::task_group_status::cancelled);
  CHECK(seen == asio::error::operation_aborted);
}
