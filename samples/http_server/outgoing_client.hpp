// outgoing_client: an asynchronous HTTP/1.1 client whose calls carry the caller's trace.
//
// `post_json` is what a service does when it calls the next one: it POSTs a
// JSON body to a URL from a coroutine on the pool and reads the answer. The
// request's `traceparent`, `tracestate` and `baggage` are written by
// `ctxpool::inject` from the *current context* -- the context of the request
// being served, which the coroutine inherited when it was spawned -- so the
// callee sees the same trace id with a new parent id (this call), and nothing
// is passed in by hand.
//
// As on the server side, the response is fed to Beast's parser here rather
// than inside `http::async_read`, so that whatever the parser throws (a field
// over 64 KiB) ends this call with an error instead of escaping to the pool
// and leaving the caller waiting.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <string>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

#include <ctxpool/propagation.hpp>

namespace http_sample {

/// How one outgoing call ended.
struct call_result {
  std::string url;
  unsigned status = 0;  ///< the response's status; 0 when there was none
  std::string error;    ///< why there was no response; empty when there was one
};

/// POSTs `json` to `url` (`http://host[:port]/target`) with the current
/// context's trace and baggage injected, and reads the response (up to 1
/// MiB), all within `timeout`. Runs on the calling coroutine's executor.
/// Never throws for a failed call: the result says what went wrong.
inline boost::asio::awaitable<call_result> post_json(std::string url, std::string json,
                                                     std::chrono::milliseconds timeout) {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace http = beast::http;
  using asio::as_tuple;
  using asio::use_awaitable;
  call_result out;
  out.url = url;

  const auto parsed = boost::urls::parse_uri(url);
  if (!parsed || parsed->scheme_id() != boost::urls::scheme::http || parsed->host().empty()) {
    out.error = "not an http:// URL";
    co_return out;
  }
  const std::string host = parsed->host();
  const std::string port = parsed->has_port() ? std::string(parsed->port()) : "80";
  const std::string target =
      parsed->encoded_target().empty() ? "/" : std::string(parsed->encoded_target());

  const auto executor = co_await asio::this_coro::executor;
  asio::ip::tcp::resolver resolver(executor);
  auto [resolve_ec, endpoints] =
      co_await resolver.async_resolve(host, port, as_tuple(use_awaitable));
  if (resolve_ec) {
    out.error = "resolve: " + resolve_ec.message();
    co_return out;
  }
  beast::tcp_stream stream(executor);
  stream.expires_after(timeout);  // one deadline for the whole call
  auto [connect_ec, peer] = co_await stream.async_connect(endpoints, as_tuple(use_awaitable));
  (void)peer;
  if (connect_ec) {
    out.error = "connect: " + connect_ec.message();
    co_return out;
  }

  http::request<http::string_body> req{http::verb::post, target, 11};
  req.set(http::field::host, std::string(parsed->encoded_host_and_port()));
  req.set(http::field::user_agent, "ctxpool-sample");
  req.set(http::field::content_type, "application/json");
  req.set(http::field::accept, "application/json");
  req.keep_alive(false);
  req.body() = std::move(json);
  req.prepare_payload();
  ctxpool::inject(req);  // the current trace, as a new operation of it; the baggage
  auto [write_ec, written] = co_await http::async_write(stream, req, as_tuple(use_awaitable));
  (void)written;
  if (write_ec) {
    out.error = "write: " + write_ec.message();
    co_return out;
  }

  http::response_parser<http::string_body> parser;
  parser.body_limit(std::size_t{1} << 20);
  parser.eager(true);
  beast::flat_buffer buffer;
  for (;;) {
    beast::error_code ec;
    if (buffer.size() > 0) {
      std::size_t used = 0;
      try {
        used = parser.put(buffer.data(), ec);
      } catch (const std::exception& e) {
        out.error = std::string("response: ") + e.what();
        co_return out;
      }
      buffer.consume(used);
      if (parser.is_done()) break;
      if (ec && ec != http::error::need_more) {
        out.error = "response: " + ec.message();
        co_return out;
      }
      if (!ec && used > 0) continue;
    }
    auto [read_ec, n] =
        co_await stream.async_read_some(buffer.prepare(16 * 1024), as_tuple(use_awaitable));
    if (read_ec == asio::error::eof && parser.got_some()) {
      parser.put_eof(ec);  // a body that ends with the connection
      if (!ec && parser.is_done()) break;
    }
    if (read_ec) {
      out.error = "read: " + read_ec.message();
      co_return out;
    }
    buffer.commit(n);
  }
  out.status = parser.get().result_int();
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  co_return out;
}

}  // namespace http_sample
