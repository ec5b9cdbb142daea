// timeouts: how long the server waits on a client before it gives up the connection.
//
// Without these a client that connects and sends nothing, sends a request a
// byte a second (slowloris) or never reads its responses holds a connection
// -- a descriptor, a coroutine, its buffers -- for ever. Each phase of a
// connection gets a deadline of its own, applied with
// `beast::tcp_stream::expires_after` before the operations of that phase; when
// it passes, the stream closes the socket and the pending operation fails
// with `beast::error::timeout`.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace http_sample {

/// The deadlines of one connection. The defaults are Boost.Beast's examples'
/// 30 seconds for every phase.
struct timeouts {
  /// Waiting for the first byte of the next request on an open connection.
  std::chrono::milliseconds idle{std::chrono::seconds(30)};
  /// From a request's first byte until all of it has been read; also bounds
  /// the lingering read after an error response. A trickling client that
  /// never finishes its headers is closed when it passes.
  std::chrono::milliseconds read{std::chrono::seconds(30)};
  /// Writing one response, including a `100 Continue`. A client that stops
  /// reading is closed when it passes.
  std::chrono::milliseconds write{std::chrono::seconds(30)};
};

/// Parses a command-line duration: "250ms", "30s", or a bare number of
/// seconds. Empty when it is none of those, negative or over a day.
inline std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  long long scale = 1000;
  if (text.ends_with("ms")) {
    scale = 1;
    text.remove_suffix(2);
  } else if (text.ends_with("s")) {
    text.remove_suffix(1);
  }
  if (text.empty() || text.size() > 9) return std::nullopt;
  long long value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  const std::chrono::milliseconds result(value * scale);
  if (result > std::chrono::hours(24)) return std::nullopt;
  return result;
}

}  // namespace http_sample
