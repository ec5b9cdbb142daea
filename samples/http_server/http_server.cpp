// http_server: a real HTTP/1.1 server on Boost.Beast whose handlers run on a
// ctxpool::thread_pool, with the request id carried as a context variable.
//
// The acceptor and every connection run on strands of the pool's executor.
// When a connection is accepted its id is set as a `context_var`; the session
// coroutine spawned there inherits it. When a request has been read, its id
// (the client's `X-Request-Id`, or one the server makes up) is set as another
// `context_var`, and from there on nobody passes it around: the handler chain
// -- a coroutine, an asynchronous "user lookup" that runs as a separate pool
// task and completes back into the coroutine, and a logger on its own thread
// and io_context, reached through `ctxpool::bind_context` -- reads it from the
// context. The response echoes it in an `X-Request-Id` header and in the
// body, and every log line is prefixed with it.
//
// The request's W3C trace context and baggage (`traceparent`, `tracestate`,
// `baggage`) are extracted into the context the same way
// (<ctxpool/propagation.hpp>); a request without a valid `traceparent`
// starts a trace of its own. Log lines carry the trace id and the parent id
// (the operation that called us) next to the request id. `POST /trace-test`
// is the W3C trace-context test service: for each `{"url", "arguments"}` of
// its JSON body it POSTs `arguments` to `url` through an asynchronous client
// on the pool (outgoing_client.hpp), all calls at once, each carrying the
// trace with a new parent id, and answers when every call has finished.
//
// The server is also written to be copied into production; each piece of
// that lives in a header of its own, so this file stays about the context:
//   timeouts.hpp         idle, read and write deadlines (slowloris, stalled readers)
//   request_reader.hpp   400 / 413 / 431, `100 Continue`, a graceful close after an error
//   accept_backoff.hpp   pausing accepts when descriptors run out (EMFILE) instead of spinning
//   log_queue.hpp        a bounded log that handlers never wait for; drops are counted
//   connections.hpp      graceful shutdown: stop accepting, finish the requests under way
//   outgoing_client.hpp  the calls /trace-test makes, with the trace injected
// HEAD is answered with the headers of the GET, without the body.
//
//   http_server [--port N] [--threads N] [--idle-timeout D] [--read-timeout D]
//               [--write-timeout D] [--drain-timeout D] [--log-queue N] [--lookup-delay D]
//               [--no-request-log]
//       serve on 127.0.0.1 until SIGINT/SIGTERM (D: "30s", "250ms", or seconds)
//   http_server --self-test [--connections N] [--requests N] [--threads N]
//   http_server --help
// A port that cannot be listened on (in use, say) is one line on stderr and exit status 1.
//
// On SIGINT or SIGTERM the server stops accepting, closes the connections
// that are between requests, answers the requests under way (with
// `Connection: close`), closes what is still open after the drain timeout
// (10 s by default), and prints on stderr how many requests it started and
// answered and how many log lines it dropped.
//
// The self-test starts the server on a free loopback port, sends
// connections x requests (default 8 x 1250) keep-alive requests from client
// threads inside the program, checks that every response carries its own
// request id, sends malformed, oversized and too-large-header requests and
// checks each gets its 400, 413 or 431 while the others keep being served,
// shuts the server down and joins every thread. It exits non-zero on any
// failure and gives up (exit 3) after 60 seconds. The production behaviour
// (timeouts, EMFILE, a stalled log, HEAD, SIGTERM under load) is checked
// from outside, against the real process, by http_server_check.cpp.
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
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <ctxpool/context.hpp>
#include <ctxpool/executor.hpp>
#include <ctxpool/propagation.hpp>

#include "accept_backoff.hpp"
#include "connections.hpp"
#include "log_queue.hpp"
#include "outgoing_client.hpp"
#include "request_reader.hpp"
#include "timeouts.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

// ---- request-scoped state: context variables, never parameters -----------------

ctxpool::context_var<std::uint64_t> connection_id{"connection_id", 0};  // set at accept
ctxpool::context_var<std::string> request_id{"request_id"};             // set per request

// ---- the log -------------------------------------------------------------------------

/// The request log. Lines go to a log thread with an io_context of its own
/// (log_queue.hpp) -- an executor that is not ctxpool's. Each line is
/// formatted there, prefixed with the connection and request ids of the
/// context that wrote it: `ctxpool::bind_context` captures that context at
/// `write` and restores it on the log thread. Prints every line in server
/// mode; in the self-test only the first few, and counts the rest.
class request_log {
 public:
  /// `enabled` false: `write` does nothing (`--no-request-log`).
  request_log(std::size_t print_limit, std::size_t capacity, bool enabled = true)
      : print_limit_(print_limit), enabled_(enabled), queue_(capacity, STDOUT_FILENO) {}

  /// Never blocks: when the log thread is behind, the line is dropped and counted.
  void write(std::string message) {
    if (!enabled_) return;
    queue_.try_post(ctxpool::bind_context([this, message = std::move(message)] {
      // On the log thread, inside the writer's context.
      const std::string id = request_id.get_or("-");
      if (id == "-") without_request_id_.fetch_add(1);
      if (lines_.fetch_add(1) < print_limit_) {
        // The trace this request belongs to and the operation that called it.
        const std::optional<ctxpool::trace_context> trace = ctxpool::current_trace();
        const std::string traced =
            trace ? " trace " + trace->trace.to_string() + " parent " + trace->parent.to_string()
                  : std::string(" trace -");
        queue_.write_line("  log: [conn " + std::to_string(connection_id.get()) + " req " + id +
                          traced + "] " + message);
      }
    }));
  }

  /// Returns once every line written so far has been handled.
  void flush() { queue_.flush(); }
  /// Writes what is still queued for at most `grace`, then stops the log thread.
  void close(std::chrono::milliseconds grace) { queue_.close(grace); }

  /// Lines handled so far, how many of them had no request id in their
  /// context, and lines dropped (queue full, or output stalled at close).
  [[nodiscard]] std::size_t lines() const noexcept { return lines_.load(); }
  [[nodiscard]] std::size_t lines_without_request_id() const noexcept {
    return without_request_id_.load();
  }
  [[nodiscard]] std::uint64_t dropped() const noexcept { return queue_.dropped(); }

 private:
  std::size_t print_limit_;
  bool enabled_;
  std::atomic<std::size_t> lines_{0};
  std::atomic<std::size_t> without_request_id_{0};
  http_sample::log_queue queue_;  // last: its thread runs the lambdas above
};

// ---- an asynchronous step of the handler chain ----------------------------------------

/// Looks the user up "in a database": runs as a separate task on the pool and
/// completes with the request id that task saw in its context, through the
/// handler's executor. As every Asio operation must, it keeps work tracked on
/// that executor while it is outstanding; with ctxpool that also brings the
/// coroutine's context back when it completes. An exception in the lookup
/// completes the operation with it (a coroutine's co_await rethrows it):
/// escaping to the pool instead, it would leave the connection waiting for
/// ever.
template <class CompletionToken>
auto async_lookup_user(ctxpool::thread_pool& pool, request_log& log, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(std::exception_ptr, std::string)>(
      [&pool, &log](auto handler) {
        auto work = asio::prefer(asio::get_associated_executor(handler, pool.get_executor()),
                                 asio::execution::outstanding_work.tracked);
        pool.post([&log, handler = std::move(handler), work = std::move(work)]() mutable {
          // A different pool task, maybe on another worker: the request id
          // came along because post() captured the coroutine's context.
          std::exception_ptr failed;
          std::string seen;
          try {
            log.write("user lookup");
            seen = request_id.get_or("<none>");
          } catch (...) {
            failed = std::current_exception();
          }
          asio::dispatch(work,
                         [handler = std::move(handler), failed, seen = std::move(seen)]() mutable {
                           std::move(handler)(failed, std::move(seen));
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

/// How the server treats its clients; every member has a flag.
struct server_options {
  http_sample::timeouts deadlines;
  http_sample::request_limits limits;
  /// How long a shutdown waits for the requests under way.
  std::chrono::milliseconds drain_timeout = 10s;
  /// Simulated database latency in the handler (0: none).
  std::chrono::milliseconds lookup_delay = 0ms;
};

class server {
 public:
  server(ctxpool::thread_pool& pool, request_log& log, unsigned short port, server_options options)
      : pool_(pool),
        log_(log),
        options_(options),
        strand_(asio::make_strand(pool.get_executor())),
        acceptor_(strand_),
        backoff_timer_(strand_),
        drain_timer_(strand_) {
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
  }

  [[nodiscard]] unsigned short port() const { return acceptor_.local_endpoint().port(); }

  void start() {
    asio::co_spawn(strand_, accept_loop(), [this](std::exception_ptr e) {
      if (e) note_failure("accept loop threw", e);
    });
  }

  /// Shuts down gracefully: stops accepting, closes the connections that are
  /// between requests, lets the requests under way finish (their responses
  /// say `Connection: close`) and closes whatever is still open after the
  /// drain timeout. The pool's wait() returns once all of it is done.
  /// Callable from any thread (a signal handler's completion, the
  /// self-test), more than once.
  void shutdown() {
    asio::post(strand_, [this] {
      if (stopping_) return;
      stopping_ = true;
      beast::error_code ignored;
      acceptor_.close(ignored);
      backoff_timer_.cancel();
      asio::co_spawn(strand_, drain(), [this](std::exception_ptr e) {
        if (e) note_failure("the drain threw", e);
        drained_.set_value();
      });
    });
  }

  /// Blocks until a shutdown() has drained every connection (or reached
  /// the drain deadline). Then the pool's wait() is short: what is left are
  /// the last handlers of the connections just closed.
  void wait_drained() { drained_.get_future().wait(); }

  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> requests_started{0};  // every request read far enough to answer
  std::atomic<std::uint64_t> responses_sent{0};    // of those, answered in full
  std::atomic<std::uint64_t> bad_requests{0};      // answered with 400, 413, 431 or 501
  /// Connections ended because their handling threw (the parser, the
  /// handler): each was answered (431, 400 or 500) where it could be, and closed.
  std::atomic<std::uint64_t> ended_by_exception{0};
  std::atomic<std::uint64_t> context_mismatches{0};
  std::atomic<std::uint64_t> closed_at_deadline{0};
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
    http_sample::accept_backoff backoff;
    while (!stopping_) {
      // Each connection lives on a strand of its own, which its stream's
      // deadline timer needs on a multi-threaded executor.
      auto c = std::make_shared<http_sample::connection>(asio::make_strand(pool_.get_executor()));
      auto [ec] =
          co_await acceptor_.async_accept(c->stream.socket(), asio::as_tuple(asio::use_awaitable));
      if (stopping_) break;
      if (ec) {
        const bool first = !backoff.in_streak();
        const std::chrono::milliseconds pause = backoff.after_failure(ec);
        if (first && pause.count() > 0) {
          std::fprintf(stderr, "http_server: accept failed (%s); pausing accepts until it works\n",
                       ec.message().c_str());
        }
        if (pause.count() > 0) {
          backoff_timer_.expires_after(pause);
          co_await backoff_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        continue;
      }
      if (const std::uint64_t failed = backoff.after_success(); failed > 1) {
        std::fprintf(stderr, "http_server: accepting again after %llu failed accepts\n",
                     static_cast<unsigned long long>(failed));
      }
      beast::error_code ignored;
      c->stream.socket().set_option(tcp::no_delay(true), ignored);
      const std::uint64_t id = connections.fetch_add(1) + 1;
      if (!registry_.add(id, c)) break;  // the drain began as we accepted it
      active_sessions.fetch_add(1);
      // Set at accept: the session spawned here starts in a copy of this
      // context and keeps its own for its whole life.
      ctxpool::set_scope for_this_connection(connection_id, id);
      asio::co_spawn(
          c->strand, session(id, c),
          asio::bind_cancellation_slot(c->cancel.slot(), [this, c](std::exception_ptr e) {
            if (e) note_failure("a session threw", e);
            active_sessions.fetch_sub(1);
          }));
    }
    beast::error_code ignored;
    acceptor_.close(ignored);
  }

  /// Runs on the acceptor's strand once shutdown() has closed the acceptor.
  asio::awaitable<void> drain() {
    registry_.drain();
    drain_timer_.expires_after(options_.drain_timeout);
    registry_.when_empty([this] {
      asio::post(strand_, [this] { drain_timer_.cancel(); });  // runs after the wait below began
    });
    co_await drain_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (const std::size_t left = registry_.size(); left > 0) {
      closed_at_deadline.fetch_add(left);
      registry_.close_all();
    }
  }

  asio::awaitable<void> session(std::uint64_t id, std::shared_ptr<http_sample::connection> c) {
    std::exception_ptr failure;
    try {
      co_await serve_requests(*c);
    } catch (const boost::system::system_error& e) {
      // Cancelled at the drain deadline (registry_.close_all()): not a failure.
      if (e.code() != asio::error::operation_aborted) failure = std::current_exception();
    } catch (...) {
      failure = std::current_exception();
    }
    close(id, *c);
    if (failure) std::rethrow_exception(failure);
  }

  void close(std::uint64_t id, http_sample::connection& c) {
    beast::error_code ignored;
    c.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    c.stream.close();
    registry_.remove(id);
  }

  /// Reads requests on one keep-alive connection until it ends.
  asio::awaitable<void> serve_requests(http_sample::connection& c) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      http_sample::read_outcome got = co_await http_sample::read_request(
          c, buffer, parser, options_.deadlines, options_.limits);
      if (got.what == http_sample::read_outcome::kind::closed) break;
      requests_started.fetch_add(1);
      if (got.what == http_sample::read_outcome::kind::reject) {
        if (got.from_exception) ended_by_exception.fetch_add(1);
        co_await reject(c, got.status, std::move(got.why));
        break;
      }
      http::request<http::string_body> req = parser.release();

      std::string id(req["X-Request-Id"]);
      if (id.empty()) {
        id = "srv-" + std::to_string(connection_id.get()) + "-" +
             std::to_string(responses_sent.load());
      }
      if (!is_valid_request_id(id)) {
        co_await reject(c, http::status::bad_request,
                        "X-Request-Id must be 1-64 of [A-Za-z0-9._-]");
        break;
      }

      // From here on the request id, the trace and the baggage are in the
      // context: nothing below takes them as parameters. A request without a
      // valid traceparent starts a trace of its own.
      auto token = request_id.set(id);
      auto trace_token = ctxpool::trace_context_var().set(ctxpool::extract_trace_context(req));
      auto baggage_token = ctxpool::baggage_var().set(ctxpool::extract_baggage(req));
      http::response<http::string_body> res;
      std::exception_ptr failed;
      try {
        res = co_await handle(req);
      } catch (const boost::system::system_error& e) {
        // Cancelled at the drain deadline: the session ends the connection.
        if (e.code() == asio::error::operation_aborted) throw;
        failed = std::current_exception();
      } catch (...) {
        failed = std::current_exception();
      }
      if (failed) {
        // One request's failure ends its own connection, answered, and
        // nothing else (co_await may not appear in a handler).
        ended_by_exception.fetch_add(1);
        co_await reject(c, http::status::internal_server_error, "internal server error");
        ctxpool::baggage_var().reset(baggage_token);
        ctxpool::trace_context_var().reset(trace_token);
        request_id.reset(token);
        break;
      }
      // A request that finishes while the server drains is the connection's last.
      const bool keep_alive = res.keep_alive() && !registry_.draining();
      res.keep_alive(keep_alive);
      c.stream.expires_after(options_.deadlines.write);
      // Through a message_generator, as Beast's own examples write: it hands
      // the socket a plain array of buffers, where writing the response
      // itself hands it Beast's nested buffer views, which cost the socket
      // more to walk than the rest of the request's handling.
      auto [write_ec, written] = co_await beast::async_write(
          c.stream, http::message_generator(std::move(res)), asio::as_tuple(asio::use_awaitable));
      (void)written;
      // Tokens taken before two co_awaits, reset after them.
      ctxpool::baggage_var().reset(baggage_token);
      ctxpool::trace_context_var().reset(trace_token);
      request_id.reset(token);
      c.in_request = false;
      if (write_ec) break;
      responses_sent.fetch_add(1);
      if (!keep_alive || registry_.draining()) break;
    }
  }

  asio::awaitable<void> reject(http_sample::connection& c, http::status status, std::string why) {
    bad_requests.fetch_add(1);
    log_.write(std::to_string(static_cast<unsigned>(status)) + " " + why);
    const bool answered =
        co_await http_sample::reject(c, status, std::move(why), options_.deadlines);
    if (answered) responses_sent.fetch_add(1);
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

    const http::verb method = req.method();
    const bool known_method =
        method == http::verb::get || method == http::verb::head || method == http::verb::post;
    // The path, exactly: `/hello%00.txt` or `/hellox` is not `/hello`.
    const std::string_view target = req.target();
    const std::string_view path = target.substr(0, target.find('?'));
    if (path == "/trace-test" && method == http::verb::post) {
      co_await trace_test(req, res);
    } else if (!known_method || path != "/hello") {
      res.result(http::status::not_found);
      res.body() = "not found\n";
    } else {
      if (options_.lookup_delay.count() > 0) {
        asio::steady_timer database(co_await asio::this_coro::executor, options_.lookup_delay);
        co_await database.async_wait(asio::use_awaitable);
      }
      std::string seen_by_lookup = co_await async_lookup_user(pool_, log_, asio::use_awaitable);
      const std::string id = request_id.get();  // after the co_awaits: still ours
      if (seen_by_lookup != id) context_mismatches.fetch_add(1);
      res.result(http::status::ok);
      res.body() = "hello from request " + seen_by_lookup + "\n";
      if (method == http::verb::post) {
        res.body() += "received " + std::to_string(req.body().size()) + " bytes\n";
      }
    }
    res.set("X-Request-Id", request_id.get());
    res.prepare_payload();
    if (method == http::verb::head) {
      // The GET's headers, Content-Length included, and no body: a body here
      // would be read by the client as the start of the next response.
      const std::size_t length = res.body().size();
      res.body().clear();
      res.content_length(length);
    }
    log_.write(std::to_string(res.result_int()));
    co_return res;
  }

  /// POST /trace-test, the W3C trace-context test service: the body is a
  /// JSON array of `{"url": ..., "arguments": ...}`; each element's
  /// `arguments` is POSTed as JSON to its `url`, all at once, each call a
  /// coroutine of its own on the pool, and the answer -- a JSON array of
  /// `{"url", "status"[, "error"]}` -- is sent once every call has finished.
  /// Each call carries this request's trace (a new parent id per call) and
  /// baggage: the coroutines start in a copy of this request's context.
  asio::awaitable<void> trace_test(const http::request<http::string_body>& req,
                                   http::response<http::string_body>& res) {
    constexpr std::size_t max_calls = 64;
    std::vector<std::pair<std::string, std::string>> calls;  // url, JSON body
    std::string invalid;
    boost::system::error_code parse_ec;
    const boost::json::value body = boost::json::parse(req.body(), parse_ec);
    const boost::json::array* elements = parse_ec ? nullptr : body.if_array();
    if (elements == nullptr) {
      invalid = "the body must be a JSON array";
    } else if (elements->size() > max_calls) {
      invalid = "at most 64 calls";
    } else {
      for (const boost::json::value& element : *elements) {
        const boost::json::object* call = element.if_object();
        const boost::json::value* url = call ? call->if_contains("url") : nullptr;
        if (url == nullptr || !url->is_string()) {
          invalid = "each element needs a string \"url\"";
          break;
        }
        const boost::json::value* arguments = call->if_contains("arguments");
        calls.emplace_back(std::string(url->get_string()),
                           arguments ? boost::json::serialize(*arguments) : "[]");
      }
    }
    if (!invalid.empty()) {
      res.result(http::status::bad_request);
      res.body() = invalid + "\n";
      co_return;
    }

    // The calls finish on their own strands; the last one wakes this
    // coroutine through a timer that never expires, on this strand. The
    // state is shared: a drain that cancels this coroutine leaves the calls
    // running to their own deadline.
    struct fan_in {
      explicit fan_in(const asio::any_io_executor& ex, std::size_t n)
          : all_done(ex, asio::steady_timer::time_point::max()), remaining(n), results(n) {}
      asio::steady_timer all_done;
      std::atomic<std::size_t> remaining;
      std::vector<http_sample::call_result> results;  // each call writes its own
    };
    auto state = std::make_shared<fan_in>(co_await asio::this_coro::executor, calls.size());
    for (std::size_t i = 0; i < calls.size(); ++i) {
      asio::co_spawn(
          asio::make_strand(pool_.get_executor()),
          http_sample::post_json(std::move(calls[i].first), std::move(calls[i].second), 5s),
          [this, state, i](std::exception_ptr e, http_sample::call_result result) {
            if (e) result.error = "the call threw";
            log_.write("POST " + result.url + " -> " +
                       (result.error.empty() ? std::to_string(result.status) : result.error));
            state->results[i] = std::move(result);
            if (state->remaining.fetch_sub(1) == 1) {
              asio::post(state->all_done.get_executor(), [state] { state->all_done.cancel(); });
            }
          });
    }
    // The wake-up is posted to this strand, so it runs after this wait began.
    if (!calls.empty()) {
      auto [wait_ec] = co_await state->all_done.async_wait(asio::as_tuple(asio::use_awaitable));
      (void)wait_ec;
    }
    if (state->remaining.load() != 0) {  // woken by a cancellation: the drain deadline
      throw boost::system::system_error(asio::error::operation_aborted);
    }
    boost::json::array answer;
    for (const http_sample::call_result& r : state->results) {
      boost::json::object entry{{"url", r.url}, {"status", r.status}};
      if (!r.error.empty()) entry["error"] = r.error;
      answer.push_back(std::move(entry));
    }
    res.result(http::status::ok);
    res.set(http::field::content_type, "application/json");
    res.body() = boost::json::serialize(answer);
  }

  ctxpool::thread_pool& pool_;
  request_log& log_;
  const server_options options_;
  asio::strand<ctxpool::thread_pool::executor_type> strand_;  // the acceptor's and the drain's
  tcp::acceptor acceptor_;
  asio::steady_timer backoff_timer_;
  asio::steady_timer drain_timer_;
  bool stopping_ = false;       // on strand_ only
  std::promise<void> drained_;  // set once, when the drain is over
  http_sample::connection_registry registry_;
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
  socket.async_connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), [&](beast::error_code ec) {
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
  const char* status_line;  // the start of the answer it must get
};

std::vector<malformed_case> malformed_cases() {
  const char* bad = "HTTP/1.1 400 ";
  return {
      {"garbage request line", "GARBAGE\r\n\r\n", bad},
      {"bad protocol", "GET /hello HTTQ/1.1\r\nHost: x\r\n\r\n", bad},
      {"header without colon", "GET /hello HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", bad},
      {"bad Content-Length", "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", bad},
      {"bad chunk size",
       "POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", bad},
      {"invalid request id", "GET /hello HTTP/1.1\r\nHost: x\r\nX-Request-Id: a b!c\r\n\r\n", bad},
      {"headers too large",
       "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(16 * 1024, 'a') + "\r\n\r\n",
       "HTTP/1.1 431 "},
      {"Content-Length too large",
       "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" +
           std::string(100 * 1024, 'b'),
       "HTTP/1.1 413 "},
      {"chunked body too large",
       "POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
           [] {
             std::string chunks;
             for (int i = 0; i < 20; ++i) chunks += "1000\r\n" + std::string(0x1000, 'c') + "\r\n";
             return chunks + "0\r\n\r\n";
           }(),
       "HTTP/1.1 413 "},
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
  // Room for every line the test writes: it checks each was logged in its context.
  request_log log(6, std::size_t{1} << 20);
  ctxpool::thread_pool pool(threads);
  server srv(pool, log, 0, server_options{});
  const unsigned short port = srv.port();
  srv.start();
  std::printf(
      "http_server self-test: 127.0.0.1:%u, %zu pool threads, %d connections x %d "
      "requests, %zu malformed\n",
      port, threads, connections, requests, malformed_cases().size());
  std::fflush(stdout);  // the log thread writes to the same descriptor

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
    if (reply.starts_with(m.status_line)) {
      ++bad_ok;
    } else {
      std::printf("  FAIL malformed (%s): want \"%s\", got \"%.60s\"\n", m.what, m.status_line,
                  reply.c_str());
    }
  }
  for (auto& t : clients) t.join();
  // And the server still serves a new connection afterwards.
  const client_result after = run_client(port, connections, 1);

  srv.shutdown();
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
    if (r.failures != 0)
      std::printf("  FAIL %s (%d failures on that connection)\n", r.first_failure.c_str(),
                  r.failures);
  }
  if (after.failures != 0) std::printf("  FAIL after malformed: %s\n", after.first_failure.c_str());

  const int expected = connections * requests + 1;
  std::printf(
      "  %d/%d responses carried their own request id; %d/%zu bad requests got their "
      "400, 413 or 431; "
      "%zu log lines; %llu connections; %.2f s\n",
      ok, expected, bad_ok, malformed_cases().size(), log.lines(),
      static_cast<unsigned long long>(srv.connections.load()), seconds);
  bool pass = ok == expected && failed == 0 && bad_ok == static_cast<int>(malformed_cases().size());
  if (srv.context_mismatches.load() != 0) {
    std::printf("  FAIL: %llu lookups saw another request's id\n",
                static_cast<unsigned long long>(srv.context_mismatches.load()));
    pass = false;
  }
  // Three lines per served request, one per malformed one; only the
  // malformed ones, rejected before a request id was set, lack an id.
  const std::size_t expected_lines = 3 * static_cast<std::size_t>(ok) + srv.bad_requests.load();
  if (log.lines() != expected_lines || log.lines_without_request_id() != srv.bad_requests.load() ||
      log.dropped() != 0) {
    std::printf(
        "  FAIL: %zu log lines (want %zu), %zu without a request id (want %llu), "
        "%llu dropped\n",
        log.lines(), expected_lines, log.lines_without_request_id(),
        static_cast<unsigned long long>(srv.bad_requests.load()),
        static_cast<unsigned long long>(log.dropped()));
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

int serve(unsigned short port, std::size_t threads, const server_options& options,
          std::size_t log_capacity, bool request_logging) {
  request_log log(static_cast<std::size_t>(-1), log_capacity, request_logging);
  ctxpool::thread_pool pool(threads);
  std::optional<server> listening;
  try {
    listening.emplace(pool, log, port, options);
  } catch (const boost::system::system_error& e) {
    // A port in use, say: one line for the operator, not std::terminate.
    std::fprintf(stderr, "http_server: cannot listen on 127.0.0.1:%u: %s\n",
                 static_cast<unsigned>(port), e.code().message().c_str());
    return 1;
  }
  server& srv = *listening;
  srv.start();
  asio::signal_set signals(pool.get_executor(), SIGINT, SIGTERM);
  signals.async_wait([&srv](beast::error_code ec, int) {
    if (!ec) srv.shutdown();
  });
  std::printf("listening on http://127.0.0.1:%u/hello (Ctrl-C to stop)\n", srv.port());
  std::fflush(stdout);  // the log thread writes to the same descriptor, bypassing stdio
  // The main thread waits for the drain rather than in pool.wait(): while a
  // thread waits there, every task's end also checks whether the pool has
  // gone idle, a cost the server would pay on each request of its life.
  srv.wait_drained();
  pool.wait();  // the last handlers of the connections just closed

  pool.join();
  // A stalled stdout must not keep the process from exiting: the log gets a
  // second, and the summary goes to stderr.
  log.close(1s);
  std::fprintf(stderr,
               "http_server: stopped; %llu requests started, %llu answered; %llu connections "
               "closed at the drain deadline; log: %zu lines, %llu dropped; %llu connections "
               "ended by an exception\n",
               static_cast<unsigned long long>(srv.requests_started.load()),
               static_cast<unsigned long long>(srv.responses_sent.load()),
               static_cast<unsigned long long>(srv.closed_at_deadline.load()), log.lines(),
               static_cast<unsigned long long>(log.dropped()),
               static_cast<unsigned long long>(srv.ended_by_exception.load()));
  return srv.failures.load() == 0 ? 0 : 1;
}

/// Prints the usage on `out`; returns the exit status: 0 when asked for
/// (`--help`), 2 after a bad argument.
int usage(const char* argv0, std::FILE* out, int status) {
  std::fprintf(out,
               "usage: %s [--port N] [--threads N] [--idle-timeout D] [--read-timeout D]\n"
               "          [--write-timeout D] [--drain-timeout D] [--log-queue LINES]\n"
               "          [--lookup-delay D] [--no-request-log]\n"
               "       %s --self-test [--connections N] [--requests N] [--threads N]\n"
               "       %s --help\n"
               "D is a duration: 30s, 250ms, or a number of seconds.\n",
               argv0, argv0, argv0);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  bool test = false;
  long port = 0;
  long connections = 8;
  long requests = 1250;
  long threads = 2;
  long log_capacity = 4096;
  bool request_logging = true;
  server_options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto number = [&](long& out, long lo, long hi) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      out = std::strtol(argv[++i], &end, 10);
      return *end == '\0' && out >= lo && out <= hi;
    };
    auto duration = [&](std::chrono::milliseconds& out) {
      if (i + 1 >= argc) return false;
      const std::optional<std::chrono::milliseconds> d = http_sample::parse_duration(argv[++i]);
      if (d) out = *d;
      return d.has_value();
    };
    bool ok = true;
    if (arg == "--help" || arg == "-h") {
      return usage(argv[0], stdout, 0);
    } else if (arg == "--self-test") {
      test = true;
    } else if (arg == "--no-request-log") {
      request_logging = false;
    } else if (arg == "--port") {
      ok = number(port, 0, 65535);
    } else if (arg == "--connections") {
      ok = number(connections, 1, 256);
    } else if (arg == "--requests") {
      ok = number(requests, 1, 1000000);
    } else if (arg == "--threads") {
      ok = number(threads, 1, 64);
    } else if (arg == "--log-queue") {
      ok = number(log_capacity, 1, 1 << 24);
    } else if (arg == "--idle-timeout") {
      ok = duration(options.deadlines.idle);
    } else if (arg == "--read-timeout") {
      ok = duration(options.deadlines.read);
    } else if (arg == "--write-timeout") {
      ok = duration(options.deadlines.write);
    } else if (arg == "--drain-timeout") {
      ok = duration(options.drain_timeout);
    } else if (arg == "--lookup-delay") {
      ok = duration(options.lookup_delay);
    } else {
      ok = false;
    }
    if (!ok) return usage(argv[0], stderr, 2);
  }
  if (test) {
    return self_test(static_cast<int>(connections), static_cast<int>(requests),
                     static_cast<std::size_t>(threads));
  }
  return serve(static_cast<unsigned short>(port), static_cast<std::size_t>(threads), options,
               static_cast<std::size_t>(log_capacity), request_logging);
}
