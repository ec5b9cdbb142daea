// Server workloads: ctxpool's I/O path side by side with Asio's own, each
// with 2 threads, over loopback, clients inside the benchmark.
//
// Servers (the same coroutine code on each; names `io_<workload>/<peer>`):
//   ctxpool        ctxpool::thread_pool{2}
//   asio_pool      boost::asio::thread_pool{2}
//   io_context     one io_context run by 2 threads
//   io_per_thread  two io_contexts, one thread each; accepted connections
//                  alternate between them (the "io_context pool" of Asio's
//                  and Beast's server examples)
// Workloads:
//   keepalive      32 keep-alive connections, each sending a request (a head
//                  and a 512-byte body), waiting for the reply, and again
//   conn_per_req   8 clients, each request on a fresh connection: connect,
//                  send, read the reply, close (accept, read, write, close on
//                  the server)
// One iteration is a batch of 512 requests. Rows count requests per second
// (items/s) and report p50/p99 latency in microseconds (counters p50_us,
// p99_us), measured by the client from the first byte sent to the last byte
// of the reply. The client is one io_context on the benchmark's thread, the
// same for every peer; on a 2-core machine it shares the cores with the
// server's threads, as a load generator on the same host does.
//
//   io_bench --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <ctxpool/executor.hpp>

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

const double min_time = [] {
  const char* text = std::getenv("CTXPOOL_BENCH_MIN_TIME");
  const double seconds = text != nullptr ? std::atof(text) : 0.0;
  return seconds > 0 ? seconds : 0.5;
}();

constexpr int batch = 512;
constexpr int keepalive_connections = 32;
constexpr int conn_per_req_clients = 8;
constexpr std::size_t body_size = 512;

const std::string request_text =
    "POST /echo HTTP/1.1\r\nHost: bench\r\nContent-Length: " + std::to_string(body_size) +
    "\r\n\r\n" + std::string(body_size, 'b');
const std::string reply_text = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

// ---- the server: the same coroutines on every peer --------------------------

/// Serves requests on one connection until the peer closes it (keep-alive),
/// or one request (`once`).
asio::awaitable<void> serve(tcp::socket socket, bool once) {
  asio::streambuf buffer;
  for (;;) {
    auto [error, head] = co_await asio::async_read_until(socket, buffer, "\r\n\r\n",
                                                         asio::as_tuple(asio::use_awaitable));
    if (error) co_return;
    buffer.consume(head);
    if (buffer.size() < body_size) {
      auto [read_error, n] = co_await asio::async_read(
          socket, buffer, asio::transfer_exactly(body_size - buffer.size()),
          asio::as_tuple(asio::use_awaitable));
      if (read_error) co_return;
    }
    buffer.consume(body_size);
    auto [write_error, written] = co_await asio::async_write(socket, asio::buffer(reply_text),
                                                             asio::as_tuple(asio::use_awaitable));
    if (write_error || once) co_return;
  }
}

/// Accepts until the acceptor closes; each connection a coroutine on the
/// executor `next_executor()` picks.
template <class NextExecutor>
asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, bool once, NextExecutor next_executor) {
  for (;;) {
    auto executor = next_executor();
    auto [error, socket] =
        co_await acceptor.async_accept(executor, asio::as_tuple(asio::use_awaitable));
    if (error) co_return;
    socket.set_option(tcp::no_delay(true));
    asio::co_spawn(executor, serve(std::move(socket), once), asio::detached);
  }
}

/// A server of one kind on an ephemeral loopback port; stops in its destructor.
class server {
 public:
  virtual ~server() = default;
  [[nodiscard]] unsigned short port() const { return port_; }

 protected:
  unsigned short port_ = 0;
};

template <class Pool>
class pool_server final : public server {
 public:
  explicit pool_server(bool once)
      : pool_(2), acceptor_(pool_, {asio::ip::address_v4::loopback(), 0}) {
    port_ = acceptor_.local_endpoint().port();
    auto executor = pool_.get_executor();
    asio::co_spawn(
        pool_, accept_loop(acceptor_, once, [executor] { return asio::any_io_executor(executor); }),
        asio::detached);
  }
  ~pool_server() override {
    asio::post(pool_, [this] { acceptor_.close(); });
    pool_.stop();
    pool_.join();
  }

 private:
  Pool pool_;
  tcp::acceptor acceptor_;
};

class io_context_server final : public server {
 public:
  explicit io_context_server(bool once)
      : work_(asio::make_work_guard(io_)), acceptor_(io_, {asio::ip::address_v4::loopback(), 0}) {
    port_ = acceptor_.local_endpoint().port();
    auto executor = io_.get_executor();
    asio::co_spawn(
        io_, accept_loop(acceptor_, once, [executor] { return asio::any_io_executor(executor); }),
        asio::detached);
    for (auto& t : threads_) t = std::thread([this] { io_.run(); });
  }
  ~io_context_server() override {
    io_.stop();
    for (auto& t : threads_) t.join();
  }

 private:
  asio::io_context io_{2};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  std::array<std::thread, 2> threads_;
};

class io_per_thread_server final : public server {
 public:
  explicit io_per_thread_server(bool once)
      : acceptor_(ios_[0], {asio::ip::address_v4::loopback(), 0}) {
    port_ = acceptor_.local_endpoint().port();
    for (auto& io : ios_) works_.emplace_back(asio::make_work_guard(io));
    asio::co_spawn(
        ios_[0],
        accept_loop(acceptor_, once,
                    [this] { return asio::any_io_executor(ios_[next_++ % 2].get_executor()); }),
        asio::detached);
    for (std::size_t i = 0; i < 2; ++i) threads_[i] = std::thread([this, i] { ios_[i].run(); });
  }
  ~io_per_thread_server() override {
    for (auto& io : ios_) io.stop();
    for (auto& t : threads_) t.join();
  }

 private:
  std::array<asio::io_context, 2> ios_{asio::io_context{1}, asio::io_context{1}};
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> works_;
  tcp::acceptor acceptor_;
  std::array<std::thread, 2> threads_;
  std::size_t next_ = 0;  // the accepting coroutine's only
};

// ---- the client ---------------------------------------------------------------

struct latencies {
  std::vector<double> us;
  void add(clock_type::time_point start) {
    us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
  }
  [[nodiscard]] double percentile(double p) {
    if (us.empty()) return 0;
    const auto k = static_cast<std::size_t>(p * static_cast<double>(us.size() - 1));
    std::nth_element(us.begin(), us.begin() + static_cast<std::ptrdiff_t>(k), us.end());
    return us[k];
  }
};

/// `count` requests on an open connection, one at a time.
asio::awaitable<void> keepalive_client(tcp::socket& socket, int count, latencies& record) {
  std::string reply(reply_text.size(), '\0');
  for (int i = 0; i < count; ++i) {
    const auto start = clock_type::now();
    co_await asio::async_write(socket, asio::buffer(request_text), asio::use_awaitable);
    co_await asio::async_read(socket, asio::buffer(reply), asio::use_awaitable);
    record.add(start);
  }
}

/// `count` requests, each on a connection of its own. The client resets the
/// connection after the reply (SO_LINGER 0), so that a long run does not
/// exhaust the loopback's ports with connections in TIME_WAIT.
asio::awaitable<void> conn_per_req_client(unsigned short port, int count, latencies& record) {
  const auto executor = co_await asio::this_coro::executor;
  std::string reply(reply_text.size(), '\0');
  for (int i = 0; i < count; ++i) {
    const auto start = clock_type::now();
    tcp::socket socket(executor);
    co_await socket.async_connect({asio::ip::address_v4::loopback(), port}, asio::use_awaitable);
    socket.set_option(tcp::no_delay(true));
    co_await asio::async_write(socket, asio::buffer(request_text), asio::use_awaitable);
    co_await asio::async_read(socket, asio::buffer(reply), asio::use_awaitable);
    record.add(start);
    socket.set_option(asio::socket_base::linger(true, 0));
    socket.close();
  }
}

/// One iteration per batch: `spawn_batch` starts the clients of a batch of
/// requests on `client`, which runs until they are done; then the counters.
template <class SpawnBatch>
void run_batches(benchmark::State& state, asio::io_context& client, SpawnBatch spawn_batch) {
  latencies record;
  for (auto _ : state) {
    spawn_batch(record);
    client.run();
    client.restart();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["p50_us"] = record.percentile(0.50);
  state.counters["p99_us"] = record.percentile(0.99);
}

template <class Server>
void keepalive(benchmark::State& state) {
  Server server(/*once=*/false);
  asio::io_context client;
  std::vector<tcp::socket> sockets;
  for (int i = 0; i < keepalive_connections; ++i) {
    sockets.emplace_back(client).connect({asio::ip::address_v4::loopback(), server.port()});
    sockets.back().set_option(tcp::no_delay(true));
  }
  run_batches(state, client, [&](latencies& record) {
    for (auto& socket : sockets) {
      asio::co_spawn(client, keepalive_client(socket, batch / keepalive_connections, record),
                     asio::detached);
    }
  });
}

template <class Server>
void conn_per_req(benchmark::State& state) {
  Server server(/*once=*/true);
  asio::io_context client;
  run_batches(state, client, [&](latencies& record) {
    for (int i = 0; i < conn_per_req_clients; ++i) {
      asio::co_spawn(client,
                     conn_per_req_client(server.port(), batch / conn_per_req_clients, record),
                     asio::detached);
    }
  });
}

using ctxpool_server = pool_server<ctxpool::thread_pool>;
using asio_pool_server = pool_server<asio::thread_pool>;

#define CTXPOOL_IO_BENCH(workload, peer, type) \
  BENCHMARK(workload<type>)                    \
      ->Name("io_" #workload "/" #peer)        \
      ->MinTime(min_time)                      \
      ->UseRealTime()                          \
      ->Unit(benchmark::kMicrosecond)

CTXPOOL_IO_BENCH(keepalive, ctxpool, ctxpool_server);
CTXPOOL_IO_BENCH(keepalive, asio_pool, asio_pool_server);
CTXPOOL_IO_BENCH(keepalive, io_context, io_context_server);
CTXPOOL_IO_BENCH(keepalive, io_per_thread, io_per_thread_server);
CTXPOOL_IO_BENCH(conn_per_req, ctxpool, ctxpool_server);
CTXPOOL_IO_BENCH(conn_per_req, asio_pool, asio_pool_server);
CTXPOOL_IO_BENCH(conn_per_req, io_context, io_context_server);
CTXPOOL_IO_BENCH(conn_per_req, io_per_thread, io_per_thread_server);

}  // namespace

BENCHMARK_MAIN();
