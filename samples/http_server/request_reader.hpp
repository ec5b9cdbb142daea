// request_reader: reading one HTTP/1.1 request the way a production server must.
//
// `read_request` takes one request off a connection, phase by phase, each
// under its own deadline (timeouts.hpp), and says what the server should
// answer when the request cannot be served:
//   - 431 when the request line and headers together exceed 8 KiB or hold
//     more than 100 fields, or when a field (a trailer, say) is too large for
//     Beast to store; 413 when the body is too large (known from
//     Content-Length before any of the body is read, or found while reading a
//     chunked one); 400 when the request is malformed;
//   - 400 for framing that request smuggling relies on (RFC 9112): a
//     Transfer-Encoding whose final coding is not `chunked` or that applies it
//     twice, Transfer-Encoding with Content-Length or on HTTP/1.0, and a
//     missing (HTTP/1.1) or repeated Host; 501 for a coding before `chunked`
//     that the server does not decode;
//   - a client that sent `Expect: 100-continue` gets `100 Continue` once its
//     headers are accepted, instead of waiting a second or so before it sends
//     the body anyway (and gets the 413 without sending the body at all).
// `reject` sends such an answer and closes the connection gracefully.
//
// The bytes are fed to Beast's parser here, in the connection's coroutine,
// rather than inside `http::async_read`: the header limit must count the
// whole header (Beast's own limit applies to what one `put` has not yet
// consumed, so headers arriving over several reads pass it), the framing
// must be checked between the header and the body, and an exception the
// parser throws (Beast's fields throw `std::length_error` for a field over
// 64 KiB) must reach this coroutine -- thrown inside a composed operation it
// would escape to the pool and leave the connection without an owner.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

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
  std::uint32_t header_fields = 100;      ///< header fields; beyond: 431
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
  /// The parser threw: the rejection answers an exception, which the server counts.
  bool from_exception = false;
};

namespace detail {

inline read_outcome reject_with(http::status status, std::string why) {
  return {read_outcome::kind::reject, status, std::move(why), false};
}

/// A request, or its header, read in full.
inline read_outcome complete() {
  return {read_outcome::kind::request, http::status::ok, {}, false};
}

/// A parse error (as opposed to the peer going away or a deadline passing).
inline bool is_parse_error(const boost::beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_target).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

/// The answer to a failed parse, or `closed` when there is nobody to answer.
inline read_outcome outcome_of(const boost::beast::error_code& ec) {
  if (ec == http::error::header_limit) {
    return reject_with(http::status::request_header_fields_too_large, "request headers too large");
  }
  if (ec == http::error::body_limit) {
    return reject_with(http::status::payload_too_large, "request body too large");
  }
  if (is_parse_error(ec)) {
    return reject_with(http::status::bad_request, "malformed request: " + ec.message());
  }
  return {};
}

/// Checks the framing of a request whose header has just been parsed, before
/// any of its body is: what a proxy in front of the server might read
/// differently is refused (RFC 9112 sections 3.2, 6.1 and 6.3).
inline std::optional<read_outcome> check_framing(const http::request_header<>& h) {
  const auto hosts = h.equal_range(http::field::host);
  const auto host_count = std::distance(hosts.first, hosts.second);
  if (host_count > 1) return reject_with(http::status::bad_request, "more than one Host field");
  if (host_count == 0 && h.version() >= 11) {
    return reject_with(http::status::bad_request, "an HTTP/1.1 request needs a Host field");
  }

  const auto encodings = h.equal_range(http::field::transfer_encoding);
  if (encodings.first == encodings.second) return std::nullopt;
  if (h.count(http::field::content_length) != 0) {
    return reject_with(http::status::bad_request, "Transfer-Encoding with Content-Length");
  }
  if (h.version() < 11) {
    return reject_with(http::status::bad_request, "Transfer-Encoding on an HTTP/1.0 request");
  }
  // The codings of every Transfer-Encoding field, in order: a comma list
  // with optional white space and empty elements.
  std::size_t codings = 0;
  std::size_t chunked = 0;
  bool chunked_last = false;
  std::string other;
  for (auto it = encodings.first; it != encodings.second; ++it) {
    std::string_view list = it->value();
    while (!list.empty()) {
      const std::size_t comma = list.find(',');
      std::string_view coding = list.substr(0, comma);
      list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
      while (!coding.empty() && (coding.front() == ' ' || coding.front() == '\t')) {
        coding.remove_prefix(1);
      }
      while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t')) {
        coding.remove_suffix(1);
      }
      if (coding.empty()) continue;
      ++codings;
      chunked_last = boost::beast::iequals(coding, "chunked");
      if (chunked_last) {
        ++chunked;
      } else if (other.empty()) {
        other = coding;
      }
    }
  }
  if (!chunked_last) {
    return reject_with(http::status::bad_request, "chunked must be the final transfer coding");
  }
  if (chunked > 1) return reject_with(http::status::bad_request, "chunked applied more than once");
  if (codings > 1) {
    return reject_with(http::status::not_implemented, "transfer coding not supported: " + other);
  }
  return std::nullopt;
}

/// Feeds what `buffer` holds to `parser`, consuming it. Returns an outcome
/// once the request is complete or must be rejected; nothing while more
/// bytes are needed. `header_bytes` counts the header's bytes over calls.
inline std::optional<read_outcome> parse_buffered(http::request_parser<http::string_body>& parser,
                                                  boost::beast::flat_buffer& buffer,
                                                  std::size_t& header_bytes,
                                                  const request_limits& limits) {
  while (!parser.is_done()) {
    const bool had_header = parser.is_header_done();
    boost::beast::error_code ec;
    std::size_t used = 0;
    try {
      used = parser.put(buffer.data(), ec);
    } catch (const std::length_error& e) {
      read_outcome out = reject_with(http::status::request_header_fields_too_large,
                                     std::string("request field too large (") + e.what() + ")");
      out.from_exception = true;
      return out;
    } catch (const std::exception& e) {
      read_outcome out = reject_with(http::status::bad_request,
                                     std::string("unparsable request (") + e.what() + ")");
      out.from_exception = true;
      return out;
    }
    buffer.consume(used);
    if (!had_header) {
      header_bytes += used;
      // What is consumed and what still waits both belong to the header.
      if (header_bytes + (parser.is_header_done() ? 0 : buffer.size()) > limits.header_bytes) {
        return outcome_of(http::error::header_limit);
      }
    }
    if (ec == http::error::need_more) return std::nullopt;
    if (ec) return outcome_of(ec);
    if (!had_header && parser.is_header_done()) {
      const auto& h = parser.get().base();
      if (static_cast<std::size_t>(std::distance(h.begin(), h.end())) > limits.header_fields) {
        return reject_with(http::status::request_header_fields_too_large, "too many header fields");
      }
      if (auto refused = check_framing(h)) return refused;
      if (const auto length = parser.content_length(); length && *length > limits.body_bytes) {
        return outcome_of(http::error::body_limit);  // without reading any of it
      }
      parser.eager(true);  // checked: the body may be parsed in one go now
      return complete();   // header done: the caller decides on 100
    }
    if (used == 0) return std::nullopt;
  }
  return complete();
}

}  // namespace detail

/// Reads the next request on `c` into `parser` (which sets its limits from
/// `limits`). Sets `c.in_request` once the request's first byte is in.
/// Runs on `c`'s strand.
inline boost::asio::awaitable<read_outcome> read_request(
    connection& c, boost::beast::flat_buffer& buffer,
    http::request_parser<http::string_body>& parser, const timeouts& deadlines,
    const request_limits& limits) {
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
  std::size_t header_bytes = 0;
  for (;;) {
    const bool had_header = parser.is_header_done();
    std::optional<read_outcome> got = detail::parse_buffered(parser, buffer, header_bytes, limits);
    if (got && got->what != read_outcome::kind::request) co_return std::move(*got);
    if (parser.is_done()) co_return detail::complete();
    if (!had_header && parser.is_header_done()) {
      if (boost::beast::iequals(parser.get()[http::field::expect], "100-continue")) {
        http::response<http::empty_body> go_on{http::status::continue_, 11};
        c.stream.expires_after(deadlines.write);
        auto [continue_ec, continue_bytes] =
            co_await http::async_write(c.stream, go_on, as_tuple(use_awaitable));
        if (continue_ec) co_return read_outcome{};
        c.stream.expires_after(deadlines.read);  // the client sends the body only now
      }
      continue;  // parse the rest of what is buffered
    }
    // co_await stays out of if statements: with GCC 12 one there crashed at run time.
    auto [ec, n] =
        co_await c.stream.async_read_some(buffer.prepare(16 * 1024), as_tuple(use_awaitable));
    if (ec) co_return read_outcome{};  // gone, or the read deadline passed
    buffer.commit(n);
  }
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
    auto [ec, n] =
        co_await c.stream.async_read_some(boost::asio::buffer(sink), as_tuple(use_awaitable));
    if (ec) break;
    total += n;
  }
  co_return true;
}

}  // namespace http_sample
