// accept_backoff: what the accept loop does when accept(2) fails.
//
// When the process runs out of descriptors (EMFILE, ENFILE) or the kernel
// out of memory for sockets (ENOBUFS, ENOMEM), the listening socket stays
// readable -- the connection is still waiting in the backlog -- so an accept
// loop that simply retries spins at full CPU and starves everything else.
// Instead the loop pauses, doubling the pause on each failure up to a cap,
// and accepts again at full speed after the first success: the connections
// queued in the backlog are then served as soon as descriptors free up
// (clients close, or idle connections time out). A connection the peer
// aborted before we took it (ECONNABORTED) is no reason to pause.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>

namespace http_sample {

/// The pause after each failed accept. Used by one accept loop at a time.
class accept_backoff {
 public:
  /// @param first the pause after the first failure of a streak.
  /// @param cap the longest pause: also the longest a queued connection
  ///        waits once descriptors are free again.
  explicit accept_backoff(std::chrono::milliseconds first = std::chrono::milliseconds(10),
                          std::chrono::milliseconds cap = std::chrono::milliseconds(500))
      : first_(first), cap_(cap) {}

  /// True for errors that concern only the connection being accepted: the
  /// next accept may well succeed at once.
  static bool is_transient(const boost::system::error_code& ec) {
    return ec == boost::asio::error::connection_aborted ||
           ec == boost::asio::error::connection_reset;
  }

  /// How long to pause after a failed accept (zero for a transient error).
  std::chrono::milliseconds after_failure(const boost::system::error_code& ec) {
    ++failures_in_streak_;
    ++total_failures_;
    if (is_transient(ec)) return std::chrono::milliseconds(0);
    next_ = next_.count() == 0 ? first_ : std::min(next_ * 2, cap_);
    return next_;
  }

  /// Records a successful accept; returns how many failures the streak that
  /// it ends had (0 if there was none), so the caller can say it recovered.
  std::uint64_t after_success() {
    const std::uint64_t streak = failures_in_streak_;
    failures_in_streak_ = 0;
    next_ = std::chrono::milliseconds(0);
    return streak;
  }

  /// True when the last accept failed: the first failure of a streak is
  /// worth a log line, the rest are not.
  [[nodiscard]] bool in_streak() const noexcept { return failures_in_streak_ > 0; }

  /// Failed accepts since the server started.
  [[nodiscard]] std::uint64_t total_failures() const noexcept { return total_failures_; }

 private:
  std::chrono::milliseconds first_;
  std::chrono::milliseconds cap_;
  std::chrono::milliseconds next_{0};
  std::uint64_t failures_in_streak_ = 0;
  std::uint64_t total_failures_ = 0;
};

}  // namespace http_sample
