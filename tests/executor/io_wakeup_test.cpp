// The wake-up invariant under real I/O: whenever a handler is ready to run,
// some worker runs it without waiting for another event. Each test keeps one
// request (or one timer, or one foreign completion) in flight at a time, so
// nothing else can wake the pool: a lost wake-up leaves the request stuck, and
// the bounded wait fails the test instead of hanging it.
//
// The socket tests have the shape that found the bug: a coroutine server that
// reads a request head, then a body of 30-64 KB that arrives in several
// segments, then writes a reply; a client that opens a fresh connection per
// request and waits for the reply before sending the next.
#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "support/watchdog.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

/// Generous: a healthy pool answers in well under a millisecond, a stuck one
/// never (until an unrelated event). Not a performance bound.
constexpr auto answer_bound = 20s;

ctxpool::context_var<std::string> request_tag{"request_tag"};

/// One session: head, then the rest of the body, then a reply naming the
/// body's length and the context value the session saw after its last read.
asio::awaitable<void> serve_one(tcp::socket socket, std::string tag) {
  request_tag.set(std::move(tag));
  try {
    asio::streambuf buffer;
    const std::size_t head =
        co_await asio::async_read_until(socket, buffer, "\r\n\r\n", asio::use_awaitable);
    std::string text(asio::buffers_begin(buffer.data()),
                     asio::buffers_begin(buffer.data()) + static_cast<std::ptrdiff_t>(head));
    buffer.consume(head);
    const std::size_t length = std::stoul(text.substr(text.find(": ") + 2));
    if (buffer.size() < length) {
      co_await asio::async_read(socket, buffer, asio::transfer_exactly(length - buffer.size()),
                                asio::use_awaitable);
    }
    const std::string reply = std::to_string(buffer.size()) + " " + request_tag.get() + "\n";
    co_await asio::async_write(socket, asio::buffer(reply), asio::use_awaitable);
  } catch (const std::exception&) {
    // The client saw no reply: its bounded wait reports it.
  }
}

/// Accepts until the acceptor is closed; each connection a new coroutine.
asio::awaitable<void> accept_loop(tcp::acceptor& acceptor) {
  const auto executor = co_await asio::this_coro::executor;
  for (int n = 0;; ++n) {
    auto [error, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (error) co_return;
    asio::co_spawn(executor, serve_one(std::move(socket), "session-" + std::to_string(n)),
                   asio::detached);
  }
}

/// A plain blocking client: connect, send head and body (in `chunk`-byte
/// writes, 0 = one write), wait at most answer_bound for the reply line.
/// Returns the reply, or an empty string if none came in time.
std::string request(unsigned short port, std::size_t body_size, std::size_t chunk) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  std::string message =
      "POST /upload HTTP/1.1\r\nContent-Length: " + std::to_string(body_size) + "\r\n\r\n";
  message.append(body_size, 'b');
  for (std::size_t sent = 0; sent < message.size();) {
    const std::size_t n =
        chunk == 0 ? message.size() - sent : std::min(chunk, message.size() - sent);
    const ssize_t written = ::send(fd, message.data() + sent, n, MSG_NOSIGNAL);
    REQUIRE(written > 0);
    sent += static_cast<std::size_t>(written);
  }
  std::string reply;
  const auto deadline = std::chrono::steady_clock::now() + answer_bound;
  while (reply.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) break;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;
    char bytes[256];
    const ssize_t got = ::recv(fd, bytes, sizeof bytes, 0);
    if (got <= 0) break;
    reply.append(bytes, static_cast<std::size_t>(got));
  }
  ::close(fd);
  return reply;
}

/// The server on a pool of `workers`, then `rounds` requests one at a time.
void serve_requests_one_at_a_time(std::size_t workers, int rounds) {
  CAPTURE(workers);
  ctxpool::thread_pool pool{workers};
  tcp::acceptor acceptor{pool, {asio::ip::address_v4::loopback(), 0}};
  const unsigned short port = acceptor.local_endpoint().port();
  asio::co_spawn(pool, accept_loop(acceptor), asio::detached);
  for (int i = 0; i < rounds; ++i) {
    CAPTURE(i);
    const std::size_t body = 30'000 + static_cast<std::size_t>(i) * 7'919 % 34'000;
    const std::size_t chunk = (i % 3 == 0) ? 0 : (i % 3 == 1) ? 16'384 : 1'500;
    const std::string reply = request(port, body, chunk);
    // The whole body arrived, and the session's context held across its reads.
    REQUIRE_MESSAGE(reply == std::to_string(body) + " session-" + std::to_string(i) + "\n",
                    "request not answered within the bound (a lost wake-up), or answered wrongly");
  }
  asio::post(pool, [&] { acceptor.close(); });
  pool.wait();
}

using ctxpool_test::require_within;

}  // namespace

TEST_CASE("a socket server on the pool answers every request whose body needs several reads") {
  for (const std::size_t workers : {1u, 2u, 4u}) serve_requests_one_at_a_time(workers, 300);
}

TEST_CASE("a chain of short timers, each armed by the previous handler, runs to its end") {
  for (const std::size_t workers : {1u, 2u, 4u}) {
    CAPTURE(workers);
    ctxpool::thread_pool pool{workers};
    constexpr int links = 400;
    std::promise<int> done;
    auto finished = done.get_future();
    asio::co_spawn(
        pool,
        [&]() -> asio::awaitable<void> {
          asio::steady_timer timer{co_await asio::this_coro::executor};
          int fired = 0;
          for (int i = 0; i < links; ++i) {
            // 0-99 us: some already due when armed, some not.
            timer.expires_after(std::chrono::microseconds(i % 100));
            co_await timer.async_wait(asio::use_awaitable);
            ++fired;
          }
          done.set_value(fired);
        },
        asio::detached);
    require_within(finished, answer_bound, "the timer chain stopped: an expired timer was not run");
    CHECK(finished.get() == links);
  }
}

TEST_CASE("completions from another io_context's thread resume coroutines on the pool") {
  // The socket lives on a foreign io_context run by its own thread; the
  // session coroutine runs on the pool, so every completion crosses from that
  // thread into the pool (Asio dispatches it through the pool's executor).
  for (const std::size_t workers : {1u, 2u, 4u}) {
    CAPTURE(workers);
    asio::io_context foreign;
    auto guard = asio::make_work_guard(foreign);
    std::thread foreign_thread([&] { foreign.run(); });
    {
      ctxpool::thread_pool pool{workers};
      tcp::acceptor acceptor{foreign, {asio::ip::address_v4::loopback(), 0}};
      const unsigned short port = acceptor.local_endpoint().port();
      for (int i = 0; i < 60; ++i) {
        CAPTURE(i);
        std::promise<tcp::socket> accepted;
        auto next = accepted.get_future();
        acceptor.async_accept(
            [&](boost::system::error_code, tcp::socket s) { accepted.set_value(std::move(s)); });
        std::future<std::string> reply = std::async(std::launch::async, [&] {
          return request(port, 30'000 + static_cast<std::size_t>(i) * 523, i % 2 == 0 ? 0 : 4'096);
        });
        require_within(next, answer_bound, "accept on the foreign io_context did not complete");
        asio::co_spawn(pool, serve_one(next.get(), "foreign-" + std::to_string(i)), asio::detached);
        require_within(reply, answer_bound + 5s, "the client's thread did not end");
        const std::string expected = std::to_string(30'000 + static_cast<std::size_t>(i) * 523) +
                                     " foreign-" + std::to_string(i) + "\n";
        REQUIRE_MESSAGE(reply.get() == expected,
                        "a completion from the foreign thread was not run");
      }
      pool.wait();
    }
    guard.reset();
    foreign_thread.join();
  }
}
