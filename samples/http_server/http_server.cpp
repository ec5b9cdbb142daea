// http_server: a real HTTP/1.1 server on Boost.Beast whose handlers run on a
// ctxpool::thread_pool, with the request id carried as a context variable.
//
// The acceptor, the sockets and every handler run on the pool's executor.
// When a connection is accepted its id is set as a `context_var`; the session
// coroutine spawned there inherits it. When a request has been read, its id
// (the client's `X-Request-Id`, or one the server makes up) is set as another
// `context_var`, and from there on nobody passes it around: the handler chain
// -- a coroutine, an asynchronous "user lookup" that runs as a separate pool
// task and completes back into the coroutine, and a logger on its own thread
// and io_context, reached through `ctxpool::bind_context` -- reads it from the
// context. The response echoes it in an `X-Request-Id` header and in the
// body, and every log line is prefixed with it. Malformed requests get a 400
// and the connection is closed; the server keeps serving everyone else.
//
//   http_server [--port N] [--threads N]   serve on 127.0.0.1 until SIGINT/SIGTERM
//   http_server --self-test [--connections N] [--requests N] [--threads N]
//
// The self-test starts the server on a free loopback port, sends
// connections x requests (default 8 x 1250) keep-alive requests from client
// threads inside the program, checks that every response carries its own
// request id, sends malformed requests and checks each gets a 400 while the
// others keep being served, shuts the server down and joins every thread.
// It exits non-zero on any failure and gives up (exit 3) after 60 seconds.
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <ctxpool/context.hpp>
#include <ctxpool/executor.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// ---- request-scoped state: context variables, never parameters -----------------

ctxpool::context_var<std::uint64_t> connection_id{"connection_id", 0};  // set at accept
ctxpool::context_var<std::string> request_id{"request_id"};             // set per request

// ---- the log -------------------------------------------------------------------------

/// An asynchronous logger with its own thread and io_context -- an executor
/// that is not ctxpool's. Each line is formatted there, prefixed with the
/// connection and request ids of the context that wrote it:
/// `ctxpool::bind_context` captures that context at `write` and restores it
/// on the log thread. Prints every line in server mode; in the self-test only
/// the first few, and counts the rest.
class request_log {
 public:
  explicit request_log(std::size_t print_limit) : print_limit_(print_limit) {}

  /// Drains the lines still queued, then joins the log thread.
  ~request_log() {
    work_.reset();
    thread_.join();
  }
  request_log(const request_log&) = delete;
  request_log& operator=(const request_log&) = delete;

  void write(std::string message) {
    asio::post(io_, ctxpool::bind_context([this, message = std::move(message)] {
      // On the log thread, inside the writer's context.
      const std::string id = request_id.get_or("-");
      if (id == "-") without_request_id_.fetch_add(1);
      if (lines_.fetch_add(1) < print_limit_) {
        std::printf("  log: [conn %llu req %s] %s\n",
                    static_cast<unsigned long long>(connection_id.get()), id.c_str(),
                    message.c_str());
      }
    }));
  }

  /// Returns once every line written so far has been handled.
  void flush() {
    std::promise<void> done;
    asio::post(io_, [&done] { done.set_value(); });
    done.get_future().wait();
  }

  /// Lines handled so far, and how many of them had no request id in their context.
  [[nodiscard]] std::size_t lines() const noexcept { return lines_.load(); }
  [[nodiscard]] std::size_t lines_without_request_id() const noexcept {
    return without_request_id_.load();
  }

 private:
  std::size_t print_limit_;
  std::atomic<std::size_t> lines_{0};
  std::atomic<std::size_t> without_request_id_{0};
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::thread thread_{[this] { io_.run(); }};  // last: starts once the rest exists
};

// ---- an asynchronous step of the handler chain ----------------------------------------

/// Looks the user up "in a database": runs as a separate task on the pool and
/// completes with the request id that task saw in its context, through the
/// handler's executor. As every Asio operation must, it keeps work tracked on
/// that executor while it is outstanding; with ctxpool that also brings the
/// coroutine's context back when it completes.
template <class CompletionToken>
auto async_lookup_user(ctxpool::thread_pool& pool, request_log& log, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(std::string)>(
      [&pool, &log](auto handler) {
        auto work = asio::prefer(asio::get_associated_executor(handler, pool.get_executor()),
                                 asio::execution::outstanding_work.tracked);
        pool.post([&log, handler = std::move(handler), work = std::move(work)]() mutable {
          // A different pool task, maybe on another worker: the request id
          // came along because post() captured the coroutine's context.
          log.write("user lookup");
          std::string seen = request_id.get_or("<none>");
          asio::dispatch(work, [handler = std::move(handler), seen = std::move(seen)]() mutable {
            std::move(handler)(std::move(seen));
          });
        });
      },
      token);
}

// ---- the server ------------------------------------------------------------------------

bool is_valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (const char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

/// A parse error (as opposed to the peer going away): worth a 400.
bool is_malformed(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_target).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

class server {
 public:
  server(ctxpool::thread_pool& pool, request_log& log, unsigned short port)
      : pool_(pool), log_(log), acceptor_(pool.get_executor()) {
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
  }

  [[nodiscard]] unsigned short port() const { return acceptor_.local_endpoint().port(); }

  void start() {
    asio::co_spawn(pool_.get_executor(), accept_loop(), [this](std::exception_ptr e) {
      if (e) note_failure("accept loop threw", e);
    });
  }

  /// Stops accepting and ends every open connection; the pool's wait()
  /// returns once the sessions have wound down. Callable from any thread.
  ///
  /// The acceptor and the sockets are used by their coroutines on the pool,
  /// so stop() does not call into them: it shuts the descriptors down
  /// (shutdown(2) is safe from any thread), the pending accept and reads
  /// complete with an error, and each coroutine closes its own object. The
  /// mutex keeps every descriptor open while it is being shut down.
  void stop() {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    for (const auto& [id, fd] : sessions_) ::shutdown(fd, SHUT_RDWR);
  }

  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> served{0};
  std::atomic<std::uint64_t> bad_requests{0};
  std::atomic<std::uint64_t> context_mismatches{0};
  std::atomic<int> active_sessions{0};
  std::atomic<int> failures{0};

 private:
  void note_failure(const char* what, std::exception_ptr e = nullptr) {
    failures.fetch_add(1);
    std::string why;
    try {
      if (e) std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      why = ex.what();
    } catch (...) {
      why = "unknown exception";
    }
    std::fprintf(stderr, "  server FAIL: %s%s%s\n", what, why.empty() ? "" : ": ", why.c_str());
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        std::lock_guard lock(mutex_);
        if (stopping_) {
          beast::error_code ignored;
          acceptor_.close(ignored);
          break;
        }
        continue;  // e.g. the peer reset before we got to it
      }
      socket.set_option(tcp::no_delay(true));
      const std::uint64_t id = connections.fetch_add(1) + 1;
      {
        std::lock_guard lock(mutex_);
        sessions_[id] = socket.native_handle();
        if (stopping_) ::shutdown(socket.native_handle(), SHUT_RDWR);  // accepted as stop() ran
      }
      active_sessions.fetch_add(1);
      // Set at accept: the session spawned here starts in a copy of this
      // context and keeps its own for its whole life.
      ctxpool::set_scope for_this_connection(connection_id, id);
      asio::co_spawn(pool_.get_executor(), session(id, std::move(socket)),
                     [this](std::exception_ptr e) {
                       if (e) note_failure("a session threw", e);
                       active_sessions.fetch_sub(1);
                     });
    }
  }

  asio::awaitable<void> session(std::uint64_t id, tcp::socket socket) {
    try {
      co_await serve_requests(socket);
    } catch (...) {
      close(id, socket);
      throw;
    }
    close(id, socket);
  }

  void close(std::uint64_t id, tcp::socket& socket) {
    std::lock_guard lock(mutex_);  // stop() may be shutting this descriptor down
    sessions_.erase(id);
    beast::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
    socket.close(ignored);
  }

  /// Reads requests on one keep-alive connection until it ends.
  asio::awaitable<void> serve_requests(tcp::socket& socket) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(8 * 1024);
      parser.body_limit(64 * 1024);
      auto [ec, bytes] =
          co_await http::async_read(socket, buffer, parser, asio::as_tuple(asio::use_awaitable));
      (void)bytes;
      if (ec) {
        if (is_malformed(ec)) {
          co_await send_bad_request(socket, "malformed request: " + ec.message());
        }
        break;
      }
      http::request<http::string_body> req = parser.release();

      std::string id(req["X-Request-Id"]);
      if (id.empty()) {
        id = "srv-" + std::to_string(connection_id.get()) + "-" + std::to_string(served.load());
      }
      if (!is_valid_request_id(id)) {
        co_await send_bad_request(socket, "X-Request-Id must be 1-64 of [A-Za-z0-9._-]");
        break;
      }

      // From here on the request id is in the context: nothing below takes it
      // as a parameter.
      auto token = request_id.set(id);
      http::response<http::string_body> res = co_await handle(req);
      const bool keep_alive = res.keep_alive();
      auto [write_ec, written] =
          co_await http::async_write(socket, res, asio::as_tuple(asio::use_awaitable));
      (void)written;
      request_id.reset(token);  // a token taken before two co_awaits, reset after them
      served.fetch_add(1);
      if (write_ec || !keep_alive) break;
    }
  }

  /// The handler chain: routing, an asynchronous lookup on another pool task,
  /// the response. Reads the request id only from the context.
  asio::awaitable<http::response<http::string_body>> handle(
      const http::request<http::string_body>& req) {
    log_.write(std::string(req.method_string()) + " " + std::string(req.target()));
    http::response<http::string_body> res;
    res.version(req.version());
    res.keep_alive(req.keep_alive());
    res.set(http::field::server, "ctxpool-sample");
    res.set(http::field::content_type, "text/plain");

    if (req.method() != http::verb::get || !req.target().starts_with("/hello")) {
      res.result(http::status::not_found);
      res.body() = "not found\n";
    } else {
      const std::string seen_by_lookup =
          co_await async_lookup_user(pool_, log_, asio::use_awaitable);
      const std::string id = request_id.get();  // after the co_await: still ours
      if (seen_by_lookup != id) context_mismatches.fetch_add(1);
      res.result(http::status::ok);
      res.body() = "hello from request " + seen_by_lookup + "\n";
    }
    res.set("X-Request-Id", request_id.get());
    res.prepare_payload();
    log_.write(std::to_string(res.result_int()));
    co_return res;
  }

  asio::awaitable<void> send_bad_request(tcp::socket& socket, std::string why) {
    bad_requests.fetch_add(1);
    log_.write("400 " + why);
    http::response<http::string_body> res{http::status::bad_request, 11};
    res.set(http::field::server, "ctxpool-sample");
    res.set(http::field::content_type, "text/plain");
    res.keep_alive(false);
    res.body() = why + "\n";
    res.prepare_payload();
    auto [ec, written] =
        co_await http::async_write(socket, res, asio::as_tuple(asio::use_awaitable));
    (void)written;
    if (!ec) co_await linger(socket);
  }

  /// A lingering close: stop sending, then read and drop what the client may
  /// still be sending (up to 1 MiB) until it closes. Closing a socket with
  /// unread data resets the connection, which could destroy the 400 before
  /// the client has read it.
  static asio::awaitable<void> linger(tcp::socket& socket) {
    beast::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
    std::array<char, 4096> sink;
    for (std::size_t total = 0; total < (std::size_t{1} << 20);) {
      auto [ec, n] = co_await socket.async_read_some(asio::buffer(sink),
                                                     asio::as_tuple(asio::use_awaitable));
      if (ec) break;
      total += n;
    }
  }

  ctxpool::thread_pool& pool_;
  request_log& log_;
  tcp::acceptor acceptor_;
  std::mutex mutex_;
  bool stopping_ = false;                          // guarded by mutex_
  std::map<std::uint64_t, int> sessions_;          // open connections' descriptors, by mutex_
};

// ---- the self-test's client ------------------------------------------------------------

struct client_result {
  int ok = 0;
  int failures = 0;
  std::string first_failure;

  void fail(std::string what) {
    if (failures++ == 0) first_failure = std::move(what);
  }
};

/// One keep-alive connection sending `count` requests, one after another.
client_result run_client(unsigned short port, int index, int count) {
  client_result result;
  try {
    asio::io_context io;
    tcp::socket socket(io);
    socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    socket.set_option(tcp::no_delay(true));
    beast::flat_buffer buffer;
    for (int n = 0; n < count; ++n) {
      const std::string id = "c" + std::to_string(index) + "-" + std::to_string(n);
      http::request<http::empty_body> req{http::verb::get, "/hello?n=" + std::to_string(n), 11};
      req.set(http::field::host, "127.0.0.1");
      req.set("X-Request-Id", id);
      req.keep_alive(true);
      http::write(socket, req);
      http::response<http::string_body> res;
      http::read(socket, buffer, res);
      if (res.result() != http::status::ok) {
        result.fail(id + ": status " + std::to_string(res.result_int()));
      } else if (res["X-Request-Id"] != id) {
        result.fail(id + ": response carries X-Request-Id " + std::string(res["X-Request-Id"]));
      } else if (res.body() != "hello from request " + id + "\n") {
        result.fail(id + ": body says " + res.body());
      } else {
        ++result.ok;
      }
    }
    beast::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
  } catch (const std::exception& e) {
    result.fail(std::string("client ") + std::to_string(index) + ": " + e.what());
  }
  return result;
}

/// Sends `bytes` on a new connection and returns everything the server sends
/// back before it closes the connection ("<timeout>" after 5 seconds).
std::string raw_exchange(unsigned short port, const std::string& bytes) {
  asio::io_context io;
  tcp::socket socket(io);
  std::string reply;
  bool done = false;
  socket.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                       [&](beast::error_code ec) {
    if (ec) {
      reply = "<connect: " + ec.message() + ">";
      done = true;
      return;
    }
    asio::async_write(socket, asio::buffer(bytes), [&](beast::error_code, std::size_t) {
      asio::async_read(socket, asio::dynamic_buffer(reply),
                       [&](beast::error_code, std::size_t) { done = true; });  // until EOF
    });
  });
  io.run_for(std::chrono::seconds(5));
  return done ? reply : "<timeout>";
}

struct malformed_case {
  const char* what;
  std::string bytes;
};

std::vector<malformed_case> malformed_cases() {
  return {
      {"garbage request line", "GARBAGE\r\n\r\n"},
      {"bad protocol", "GET /hello HTTQ/1.1\r\nHost: x\r\n\r\n"},
      {"header without colon", "GET /hello HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"},
      {"bad Content-Length", "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"},
      {"bad chunk size",
       "POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"},
      {"header too large",
       "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(16 * 1024, 'a') + "\r\n\r\n"},
      {"invalid request id", "GET /hello HTTP/1.1\r\nHost: x\r\nX-Request-Id: a b!c\r\n\r\n"},
  };
}

/// Ends the process if the self-test has not finished in time: a hung server
/// must fail the test, not stall CI. Joined like every other thread.
class watchdog {
 public:
  explicit watchdog(std::chrono::seconds limit)
      : thread_([this, limit] {
          std::unique_lock lock(mutex_);
          if (!done_cv_.wait_for(lock, limit, [this] { return done_; })) {
            std::fprintf(stderr, "http_server: self-test timed out after %lld s\n",
                         static_cast<long long>(limit.count()));
            std::_Exit(3);
          }
        }) {}
  ~watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    done_cv_.notify_one();
    thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the members it uses exist
};

int self_test(int connections, int requests, std::size_t threads) {
  const watchdog limit(std::chrono::seconds(60));
  const auto started = std::chrono::steady_clock::now();
  request_log log(6);
  ctxpool::thread_pool pool(threads);
  server srv(pool, log, 0);
  const unsigned short port = srv.port();
  srv.start();
  std::printf("http_server self-test: 127.0.0.1:%u, %zu pool threads, %d connections x %d "
              "requests, %zu malformed\n",
              port, threads, connections, requests, malformed_cases().size());

  std::vector<client_result> results(static_cast<std::size_t>(connections));
  std::vector<std::thread> clients;
  for (int c = 0; c < connections; ++c) {
    clients.emplace_back([&results, port, c, requests] {
      results[static_cast<std::size_t>(c)] = run_client(port, c, requests);
    });
  }
  // Malformed requests arrive while the clients are being served.
  int bad_ok = 0;
  for (const malformed_case& m : malformed_cases()) {
    const std::string reply = raw_exchange(port, m.bytes);
    if (reply.starts_with("HTTP/1.1 400 ")) {
      ++bad_ok;
    } else {
      std::printf("  FAIL malformed (%s): got \"%.60s\"\n", m.what, reply.c_str());
    }
  }
  for (auto& t : clients) t.join();
  // And the server still serves a new connection afterwards.
  const client_result after = run_client(port, connections, 1);

  srv.stop();
  pool.wait();
  pool.join();
  log.flush();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  int ok = after.ok;
  int failed = after.failures;
  for (const client_result& r : results) {
    ok += r.ok;
    failed += r.failures;
    if (r.failures != 0) std::printf("  FAIL %s (%d failures on that connection)\n",
                                     r.first_failure.c_str(), r.failures);
  }
  if (after.failures != 0) std::printf("  FAIL after malformed: %s\n", after.first_failure.c_str());

  const int expected = connections * requests + 1;
  std::printf("  %d/%d responses carried their own request id; %d/%zu malformed got 400; "
              "%zu log lines; %llu connections; %.2f s\n",
              ok, expected, bad_ok, malformed_cases().size(), log.lines(),
              static_cast<unsigned long long>(srv.connections.load()), seconds);
  bool pass = ok == expected && failed == 0 &&
              bad_ok == static_cast<int>(malformed_cases().size());
  if (srv.context_mismatches.load() != 0) {
    std::printf("  FAIL: %llu lookups saw another request's id\n",
                static_cast<unsigned long long>(srv.context_mismatches.load()));
    pass = false;
  }
  // Three lines per served request, one per malformed one; only the
  // malformed ones, rejected before a request id was set, lack an id.
  const std::size_t expected_lines = 3 * static_cast<std::size_t>(ok) + srv.bad_requests.load();
  if (log.lines() != expected_lines || log.lines_without_request_id() != srv.bad_requests.load()) {
    std::printf("  FAIL: %zu log lines (want %zu), %zu without a request id (want %llu)\n",
                log.lines(), expected_lines, log.lines_without_request_id(),
                static_cast<unsigned long long>(srv.bad_requests.load()));
    pass = false;
  }
  if (srv.active_sessions.load() != 0 || srv.failures.load() != 0) {
    std::printf("  FAIL: %d sessions still active, %d server failures\n",
                srv.active_sessions.load(), srv.failures.load());
    pass = false;
  }
  std::printf("%s\n", pass ? "OK: every response carried its own request id; server shut down "
                             "cleanly"
                           : "FAIL");
  return pass ? 0 : 1;
}

int serve(unsigned short port, std::size_t threads) {
  request_log log(static_cast<std::size_t>(-1));
  ctxpool::thread_pool pool(threads);
  server srv(pool, log, port);
  srv.start();
  asio::signal_set signals(pool.get_executor(), SIGINT, SIGTERM);
  signals.async_wait([&srv](beast::error_code ec, int) {
    if (!ec) srv.stop();
  });
  std::printf("listening on http://127.0.0.1:%u/hello (Ctrl-C to stop)\n", srv.port());
  std::fflush(stdout);
  pool.wait();  // returns once stop() has closed everything
  pool.join();
  std::printf("stopped after %llu requests\n", static_cast<unsigned long long>(srv.served.load()));
  return 0;
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--port N] [--threads N]\n"
               "       %s --self-test [--connections N] [--requests N] [--threads N]\n",
               argv0, argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  bool test = false;
  long port = 0;
  long connections = 8;
  long requests = 1250;
  long threads = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto number = [&](long& out, long lo, long hi) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      out = std::strtol(argv[++i], &end, 10);
      return *end == '\0' && out >= lo && out <= hi;
    };
    bool ok = true;
    if (arg == "--self-test") {
      test = true;
    } else if (arg == "--port") {
      ok = number(port, 0, 65535);
    } else if (arg == "--connections") {
      ok = number(connections, 1, 256);
    } else if (arg == "--requests") {
      ok = number(requests, 1, 1000000);
    } else if (arg == "--threads") {
      ok = number(threads, 1, 64);
    } else {
      ok = false;
    }
    if (!ok) return usage(argv[0]);
  }
  if (test) {
    return self_test(static_cast<int>(connections), static_cast<int>(requests),
                     static_cast<std::size_t>(threads));
  }
  return serve(static_cast<unsigned short>(port), static_cast<std::size_t>(threads));
}
