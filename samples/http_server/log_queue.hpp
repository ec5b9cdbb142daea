// log_queue: a log thread that request handling can never wait for.
//
// Lines are handed to a thread of their own through an io_context -- an
// executor that is not ctxpool's, which is why the request log reaches it
// through `ctxpool::bind_context`. Two things keep a slow reader of the
// output (a stalled pipe, a full disk, a terminal scrolled back) from
// reaching the request handlers:
//   - the queue is bounded: when `capacity` lines are waiting, `try_post`
//     drops the line, counts it and returns at once, so memory stays bounded
//     and a handler never blocks on the log;
//   - lines are written with write(2) after poll(2) says the output can take
//     them, never blocking for long, so `close` can give up at a deadline
//     and the process still exits.
// Lines dropped either way are counted and reported at exit. Lines are
// taken and written in batches (a millisecond's worth, one write(2) for
// whatever the log thread has at hand), so that logging costs a busy server
// a few system calls per batch rather than a wake-up and a write per line.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include <poll.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

namespace http_sample {

/// A bounded queue of log work run on one thread, writing lines to a
/// descriptor. `try_post` may be called from any thread; `write_line` only
/// from work running on the log thread; `close` from one thread, once.
class log_queue {
 public:
  /// @param capacity lines that may wait before `try_post` drops new ones.
  /// @param fd where lines go (not owned; a pipe, a file or a terminal).
  log_queue(std::size_t capacity, int fd) : capacity_(capacity), fd_(fd) {}

  /// Closes with a one-second grace, if `close` has not been called.
  ~log_queue() { close(std::chrono::seconds(1)); }
  log_queue(const log_queue&) = delete;
  log_queue& operator=(const log_queue&) = delete;

  /// Queues `work` for the log thread, or drops it when `capacity` entries
  /// are already waiting or the queue is closing. Never blocks.
  /// @returns whether `work` was queued.
  template <class F>
  bool try_post(F&& work) {
    if (waiting_.fetch_add(1, std::memory_order_relaxed) >= capacity_ ||
        closing_.load(std::memory_order_acquire)) {
      waiting_.fetch_sub(1, std::memory_order_relaxed);
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    boost::asio::post(io_, [this, work = std::forward<F>(work)]() mutable {
      const std::size_t behind = waiting_.fetch_sub(1, std::memory_order_relaxed) - 1;
      std::move(work)();
      if (behind == 0) write_pending();  // the last queued line writes the batch
    });
    return true;
  }

  /// Adds one line (a newline is added) to the output. Lines over 1 KiB are
  /// cut there. Lines are written in batches: when no more work is queued,
  /// or when 3 KiB are pending -- one write(2) for many lines instead of one
  /// each. Only from work running on the log thread.
  void write_line(std::string_view line) {
    pending_.append(line.substr(0, std::min<std::size_t>(line.size(), 1024)));
    pending_ += '\n';
    ++pending_lines_;
    if (pending_.size() >= 3 * 1024) write_pending();
  }

  /// Returns once everything queued so far has run (used by the self-test).
  void flush() {
    std::promise<void> done;
    boost::asio::post(io_, [this, &done] {
      write_pending();
      done.set_value();
    });
    done.get_future().wait();
  }

  /// Stops taking lines, writes those still queued for at most `grace`,
  /// counts the rest as dropped, and joins the log thread.
  void close(std::chrono::milliseconds grace) {
    if (closing_.exchange(true)) return;
    deadline_ns_.store((std::chrono::steady_clock::now() + grace).time_since_epoch().count(),
                       std::memory_order_release);
    work_.reset();
    thread_.join();
  }

  /// Lines written, and lines dropped (queue full, or output stalled at close).
  [[nodiscard]] std::uint64_t written() const noexcept { return written_.load(); }
  [[nodiscard]] std::uint64_t dropped() const noexcept { return dropped_.load(); }

 private:
  /// Writes the pending lines, waiting while the output is full but giving
  /// up -- and counting them as dropped -- once the close deadline has
  /// passed. At most 4 KiB at a time (the batch plus one cut line): a pipe
  /// that poll(2) calls writable takes that much without blocking.
  void write_pending() {
    std::size_t done = 0;
    while (done < pending_.size() && !past_deadline()) {
      pollfd p{fd_, POLLOUT, 0};
      const int ready = ::poll(&p, 1, 100);  // wake up now and then to look at the deadline
      if (ready < 0 && errno != EINTR) break;
      if (ready > 0) {
        if ((p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) break;
        const ssize_t w = ::write(fd_, pending_.data() + done, pending_.size() - done);
        if (w < 0 && errno != EINTR && errno != EAGAIN) break;
        if (w > 0) done += static_cast<std::size_t>(w);
      }
    }
    (done == pending_.size() ? written_ : dropped_)
        .fetch_add(pending_lines_, std::memory_order_relaxed);
    pending_.clear();
    pending_lines_ = 0;
  }

  bool past_deadline() const {
    return std::chrono::steady_clock::now().time_since_epoch().count() >
           deadline_ns_.load(std::memory_order_acquire);
  }

  const std::size_t capacity_;
  const int fd_;
  std::atomic<std::size_t> waiting_{0};
  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<bool> closing_{false};
  std::atomic<std::chrono::steady_clock::rep> deadline_ns_{
      std::chrono::steady_clock::duration::max().count()};
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::string pending_;              // log thread only: lines not yet written
  std::uint64_t pending_lines_ = 0;  // log thread only
  std::thread thread_{[this] {       // last: starts once the rest exists
    // Idle, the thread blocks until a line comes. Then, while lines keep
    // coming, it takes them a millisecond's worth at a time: it is never
    // waiting inside the io_context then, so posting a line is a queue push
    // and not also a wake-up of this thread, line after line.
    while (io_.run_one() != 0) {
      do {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      } while (io_.poll() != 0);
    }
    write_pending();
  }};
};

}  // namespace http_sample
