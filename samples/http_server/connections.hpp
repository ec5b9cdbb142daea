// connections: the open connections, for a graceful shutdown.
//
// Shutting down gracefully means: stop accepting, close the connections that
// are between requests, let every request already under way finish -- its
// response says `Connection: close` -- and close whatever is still open when
// the drain time is up. That needs to know, for each connection, whether it
// is between requests. Each connection's state is touched only on its own
// strand, so `drain` and `close_all` do not reach into the connections from
// the signal's thread: they post the decision onto each connection's strand,
// where it cannot race with the request that might just be starting there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/tcp_stream.hpp>

namespace http_sample {

/// One connection: its stream, the strand it lives on, whether a request is
/// under way, and the signal that cancels whatever its coroutine awaits.
/// Everything but `strand` is used only on that strand.
struct connection {
  explicit connection(boost::asio::any_io_executor on) : strand(on), stream(std::move(on)) {}

  boost::asio::any_io_executor strand;
  boost::beast::tcp_stream stream;
  /// From a request's first byte until its response is written.
  bool in_request = false;
  /// Bound to the connection's coroutine when it is spawned: at the drain
  /// deadline it also ends a handler that is not waiting on the socket.
  boost::asio::cancellation_signal cancel;
};

/// The registry of open connections. All members may be called from any thread.
class connection_registry {
 public:
  /// Registers a connection; returns false (and registers nothing) once
  /// draining has begun, so that a connection accepted as the server stops
  /// is closed at once.
  bool add(std::uint64_t id, std::shared_ptr<connection> c) {
    std::lock_guard lock(mutex_);
    if (draining_) return false;
    open_.emplace(id, std::move(c));
    return true;
  }

  /// Unregisters a connection that has ended; the last one to go while
  /// draining runs the `when_empty` callback.
  void remove(std::uint64_t id) {
    std::function<void()> notify;
    {
      std::lock_guard lock(mutex_);
      open_.erase(id);
      if (open_.empty() && draining_) notify = std::exchange(on_empty_, nullptr);
    }
    if (notify) notify();
  }

  /// True once `drain` has been called. A connection checks it when a
  /// request is done and closes rather than wait for another.
  [[nodiscard]] bool draining() const {
    std::lock_guard lock(mutex_);
    return draining_;
  }

  /// Begins draining: new connections are refused, and every connection that
  /// is between requests has its pending read cancelled (on its strand, so a
  /// request that has started by then is left to finish).
  void drain() {
    for_each_open(
        [](const std::shared_ptr<connection>& c) {
          boost::asio::post(c->strand, [c] {
            if (!c->in_request) c->stream.cancel();
          });
        },
        /*start_draining=*/true);
  }

  /// Closes every connection still open, whatever it is doing: its
  /// coroutine is cancelled, so a handler waiting on something else than
  /// the socket (a slow database) ends too.
  void close_all() {
    for_each_open(
        [](const std::shared_ptr<connection>& c) {
          boost::asio::post(c->strand, [c] {
            c->cancel.emit(boost::asio::cancellation_type::terminal);
            c->stream.close();
          });
        },
        /*start_draining=*/true);
  }

  /// Runs `f` once no connection is open after `drain`: now, if that is
  /// already so, else on the thread of the last `remove`.
  void when_empty(std::function<void()> f) {
    {
      std::lock_guard lock(mutex_);
      if (!open_.empty()) {
        on_empty_ = std::move(f);
        return;
      }
    }
    f();
  }

  /// Connections open now.
  [[nodiscard]] std::size_t size() const {
    std::lock_guard lock(mutex_);
    return open_.size();
  }

 private:
  template <class F>
  void for_each_open(F f, bool start_draining) {
    std::lock_guard lock(mutex_);
    if (start_draining) draining_ = true;
    for (const auto& [id, c] : open_) f(c);
  }

  mutable std::mutex mutex_;
  bool draining_ = false;                                      // guarded by mutex_
  std::map<std::uint64_t, std::shared_ptr<connection>> open_;  // guarded by mutex_
  std::function<void()> on_empty_;                             // guarded by mutex_
};

}  // namespace http_sample
