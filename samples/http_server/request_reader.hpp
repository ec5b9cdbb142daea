// request_reader: reading one HTTP/1.1 request the way a production server must.
//
// `read_request` takes one request off a connection, phase by phase, each
// under its own deadline (timeouts.hpp), and says what the server should
// answer when the request cannot be served:
//   - 431 when the headers are too large, 413 when the body is (known from
//     Content-Length before any of the body is read, or found while reading a
//     chunked one), 400 when the request is malformed;
//   - a client that sent `Expect: 100-continue` gets `100 Continue` once its
//     headers are accepted, instead of waiting a second or so before it sends
//     the body anyway (and gets the 413 without sending the body at all).
// `reject` sends such an answer and closes the connection gracefully.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "connections.hpp"
#include "timeouts.hpp"

namespace http_sample {

namespace http = boost::beast::http;

/// The largest request the server reads.
struct request_limits {
  std::uint32_t header_bytes = 8 * 1024;  ///< request line and headers; beyond: 431
  std::uint64_t body_bytes = 64 * 1024;   ///< body; beyond: 413
};

/// What reading one request came to.
struct read_outcome {
  enum class kind {
    request,  ///< a whole request is in the parser
    closed,   ///< the peer went away, a deadline passed, or the read was cancelled
    reject,   ///< answer `status` (with `why`) and close
  };
  kind what = kind::closed;
  http::status status = http::status::ok;
  std::string why;
};

namespace detail {

/// A parse error (as opposed to the peer going away or a deadline passing).
inline bool is_parse_error(const boost::beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_target).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

/// The answer to a failed read, or `closed` when there is nobody to answer.
inline read_outcome outcome_of(const boost::beast::error_code& ec) {
  if (ec == http::error::header_limit) {
    return {read_outcome::kind::reject, http::status::request_header_fields_too_large,
            "request headers too large"};
  }
  if (ec == http::error::body_limit) {
    return {read_outcome::kind::reject, http::status::payload_too_large, "request body too large"};
  }
  if (is_parse_error(ec)) {
    return {read_outcome::kind::reject, http::status::bad_request,
            "malformed request: " + ec.message()};
  }
  return {};
}

}  // namespace detail

/// Reads the next request on `c` into `parser` (which sets its limits from
/// `limits`). Sets `c.in_request` once the request's first byte is in.
/// Runs on `c`'s strand.
inline boost::asio::awaitable<read_outcome> read_request(
    connection& c, boost::beast::flat_buffer& buffer, http::request_parser<http::string_body>& parser,
    const timeouts& deadlines, const request_limits& limits) {
  using boost::asio::as_tuple;
  using boost::asio::use_awaitable;
  parser.header_limit(limits.header_bytes);
  parser.body_limit(limits.body_bytes);

  // Idle: wait for the first byte, unless a pipelined request is buffered.
  if (buffer.size() == 0) {
    c.stream.expires_after(deadlines.idle);
    auto [ec, n] = co_await c.stream.async_read_some(buffer.prepare(4096), as_tuple(use_awaitable));
    if (ec) co_return read_outcome{};
    buffer.commit(n);
  }
  c.in_request = true;

  // The headers, and the body, within the read deadline.
  c.stream.expires_after(deadlines.read);
  // co_await stays out of if statements: with GCC 12 one there crashed at run time.
  auto [header_ec, header_bytes] =
      co_await http::async_read_header(c.stream, buffer, parser, as_tuple(use_awaitable));
  if (header_ec) co_return detail::outcome_of(header_ec);
  if (const auto length = parser.content_length(); length && *length > limits.body_bytes) {
    co_return detail::outcome_of(http::error::body_limit);  // without reading any of it
  }
  if (boost::beast::iequals(parser.get()[http::field::expect], "100-continue") &&
      !parser.is_done()) {
    http::response<http::empty_body> go_on{http::status::continue_, 11};
    c.stream.expires_after(deadlines.write);
    auto [continue_ec, continue_bytes] =
        co_await http::async_write(c.stream, go_on, as_tuple(use_awaitable));
    if (continue_ec) co_return read_outcome{};
    c.stream.expires_after(deadlines.read);  // the client sends the body only now
  }
  auto [body_ec, body_bytes] =
      co_await http::async_read(c.stream, buffer, parser, as_tuple(use_awaitable));
  if (body_ec) co_return detail::outcome_of(body_ec);
  co_return read_outcome{read_outcome::kind::request, http::status::ok, {}};
}

/// Sends `status` with `why` as the body and `Connection: close`, then
/// closes gracefully: stop sending, then read and drop what the client may
/// still be sending (up to 1 MiB, within the read deadline) until it closes.
/// Closing with unread data would reset the connection, which could destroy
/// the answer before the client has read it. Returns whether the answer was
/// written.
inline boost::asio::awaitable<bool> reject(connection& c, http::status status, std::string why,
                                           const timeouts& deadlines) {
  using boost::asio::as_tuple;
  using boost::asio::use_awaitable;
  http::response<http::string_body> res{status, 11};
  res.set(http::field::server, "ctxpool-sample");
  res.set(http::field::content_type, "text/plain");
  res.keep_alive(false);
  res.body() = std::move(why) + "\n";
  res.prepare_payload();
  c.stream.expires_after(deadlines.write);
  auto [write_ec, written] = co_await http::async_write(c.stream, res, as_tuple(use_awaitable));
  if (write_ec) co_return false;
  boost::beast::error_code ignored;
  c.stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
  c.stream.expires_after(deadlines.read);
  std::array<char, 4096> sink;
  for (std::size_t total = 0; total < (std::size_t{1} << 20);) {
    auto [ec, n] = co_await c.stream.async_read_some(boost::asio::buffer(sink),
                                                     as_tuple(use_awaitable));
    if (ec) break;
    total += n;
  }
  co_return true;
}

}  // namespace http_sample
