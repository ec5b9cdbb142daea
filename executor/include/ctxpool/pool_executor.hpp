// pool_executor: the Asio standard executor of a ctxpool::thread_pool.
//
// Handlers run through it continue the logical context that scheduled them:
// an executor obtained with `outstanding_work.tracked` captures the current
// context at that moment, which is what brings a coroutine's context back
// when its operation completes; others capture it at `execute` time. See
// <ctxpool/thread_pool.hpp> for the pool, <ctxpool/asio/strand.hpp> for its
// strands.
//
// @par Thread safety
// Executors may be copied and used from any thread.
//
// @par Lifetime
// An executor must not outlive its pool; one that tracks work keeps the
// pool's `wait()` and `join()` waiting while it (or a copy) exists.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include <boost/asio/execution.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>
#include <boost/asio/strand.hpp>

#include <ctxpool/context.hpp>
#include <ctxpool/detail/pool_core.hpp>
#include <ctxpool/hooks.hpp>

namespace ctxpool {

class thread_pool;

/// The Asio standard executor of a `thread_pool` (`thread_pool::executor_type`).
///
/// Supports `execute`, `query` (context, blocking, relationship,
/// outstanding_work, allocator, mapping, occupancy) and `require`/`prefer`
/// of blocking.possibly/never, relationship.fork/continuation and
/// outstanding_work.tracked/untracked.
///
/// Context propagation: a function it executes runs in a fresh context that
/// *continues* a captured one (tokens set there can be reset). An executor
/// obtained with `outstanding_work.tracked` captures the current context at
/// that moment and runs everything in it; Asio takes such an executor on the
/// initiating thread whenever an asynchronous operation starts, which is what
/// brings a coroutine's context back when its operation completes. Other
/// executors capture the context at `execute` time.
class pool_executor {
 public:
  pool_executor(const pool_executor& other) noexcept
      : tagged_core_(other.tagged_core_), snapshot_(other.snapshot_) {
    if (tracked()) core().add_tracked();
  }
  pool_executor(pool_executor&& other) noexcept
      : tagged_core_(
            std::exchange(other.tagged_core_, other.tagged_core_ & ~std::uintptr_t{tracked_bit})),
        snapshot_(std::move(other.snapshot_)) {}
  pool_executor& operator=(const pool_executor& other) noexcept {
    if (this != &other) *this = pool_executor(other);
    return *this;
  }
  pool_executor& operator=(pool_executor&& other) noexcept {
    if (this != &other) {
      if (tracked()) core().remove_tracked();
      tagged_core_ =
          std::exchange(other.tagged_core_, other.tagged_core_ & ~std::uintptr_t{tracked_bit});
      snapshot_ = std::move(other.snapshot_);
    }
    return *this;
  }
  ~pool_executor() {
    if (tracked()) core().remove_tracked();
  }

  /// Runs `f` on the pool: inline when called from one of the pool's threads
  /// and blocking.never was not required, else queued. Never throws
  /// pool_closed: after the pool was joined or stopped the function is kept
  /// unrun and destroyed with the pool, as an io_context treats a stopped queue.
  template <class F>
  void execute(F&& f) const {
    detail::captured_context captured = context_to_run_in();
    const task_info info{core().next_task_id(), {}, "asio handler"};
    if (!(bits() & never_bit) && core().running_in_this_thread()) {
      core().run_inline(std::forward<F>(f), std::move(captured), /*continuation=*/true, info);
    } else {
      core().enqueue(std::forward<F>(f), std::move(captured), /*continuation=*/true, info,
                     /*check_open=*/false);
    }
  }

  /// The pool itself: the execution context that hosts its timers, sockets
  /// and services (as asio::thread_pool's executor answers).
  [[nodiscard]] thread_pool& query(boost::asio::execution::context_t) const noexcept;
  [[nodiscard]] boost::asio::execution::blocking_t query(
      boost::asio::execution::blocking_t) const noexcept {
    if (bits() & never_bit) return boost::asio::execution::blocking.never;
    return boost::asio::execution::blocking.possibly;
  }
  [[nodiscard]] boost::asio::execution::relationship_t query(
      boost::asio::execution::relationship_t) const noexcept {
    if (bits() & continuation_bit) return boost::asio::execution::relationship.continuation;
    return boost::asio::execution::relationship.fork;
  }
  [[nodiscard]] boost::asio::execution::outstanding_work_t query(
      boost::asio::execution::outstanding_work_t) const noexcept {
    if (tracked()) return boost::asio::execution::outstanding_work.tracked;
    return boost::asio::execution::outstanding_work.untracked;
  }
  /// Tasks are allocated from ctxpool's own small-block allocator, recycled
  /// between workers and submitters; no allocator can be chosen.
  template <class OtherAllocator>
  [[nodiscard]] std::allocator<void> query(
      boost::asio::execution::allocator_t<OtherAllocator>) const noexcept {
    return {};
  }
  [[nodiscard]] static constexpr boost::asio::execution::mapping_t query(
      boost::asio::execution::mapping_t) noexcept {
    return boost::asio::execution::mapping.thread;
  }
  /// The number of worker threads (how much work is worth handing out at once).
  [[nodiscard]] std::size_t query(boost::asio::execution::occupancy_t) const noexcept {
    return core().thread_count();
  }

  [[nodiscard]] pool_executor require(boost::asio::execution::blocking_t::possibly_t) const {
    return with_bits(static_cast<std::uint8_t>(bits() & ~never_bit));
  }
  [[nodiscard]] pool_executor require(boost::asio::execution::blocking_t::never_t) const {
    return with_bits(static_cast<std::uint8_t>(bits() | never_bit));
  }
  [[nodiscard]] pool_executor require(boost::asio::execution::relationship_t::fork_t) const {
    return with_bits(static_cast<std::uint8_t>(bits() & ~continuation_bit));
  }
  [[nodiscard]] pool_executor require(
      boost::asio::execution::relationship_t::continuation_t) const {
    return with_bits(static_cast<std::uint8_t>(bits() | continuation_bit));
  }
  /// Counts as outstanding work while it (or a copy) lives, and captures the
  /// calling thread's context now: see the class comment.
  [[nodiscard]] pool_executor require(boost::asio::execution::outstanding_work_t::tracked_t) const {
    return pool_executor(&core(), core().capture(),
                         static_cast<std::uint8_t>(bits() | tracked_bit | snapshot_bit));
  }
  [[nodiscard]] pool_executor require(
      boost::asio::execution::outstanding_work_t::untracked_t) const {
    return pool_executor(&core(), {},
                         static_cast<std::uint8_t>(bits() & ~(tracked_bit | snapshot_bit)));
  }

  /// Whether the calling thread is one of the pool's workers.
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return core().running_in_this_thread();
  }

  /// Same pool and same properties (the captured context does not count,
  /// as an allocator would not).
  friend bool operator==(const pool_executor& a, const pool_executor& b) noexcept {
    return a.tagged_core_ == b.tagged_core_;
  }
  friend bool operator!=(const pool_executor& a, const pool_executor& b) noexcept {
    return !(a == b);
  }

 private:
  friend class thread_pool;
  friend class boost::asio::strand<pool_executor>;  // binds each handler to its context
  static constexpr std::uint8_t never_bit = 1;
  static constexpr std::uint8_t continuation_bit = 2;
  static constexpr std::uint8_t tracked_bit = 4;
  static constexpr std::uint8_t snapshot_bit = 8;

  static constexpr std::uintptr_t bit_mask = 15;

  pool_executor(detail::pool_core* core, detail::captured_context snapshot,
                std::uint8_t bits) noexcept
      : tagged_core_(reinterpret_cast<std::uintptr_t>(core) | bits),
        snapshot_(std::move(snapshot)) {
    static_assert(alignof(detail::pool_core) > bit_mask, "the property bits live in the pointer");
    if (tracked()) core->add_tracked();
  }

  [[nodiscard]] pool_executor with_bits(std::uint8_t bits) const {
    return pool_executor(&core(), snapshot_, bits);
  }
  [[nodiscard]] detail::pool_core& core() const noexcept {
    return *reinterpret_cast<detail::pool_core*>(tagged_core_ & ~bit_mask);
  }
  [[nodiscard]] std::uint8_t bits() const noexcept {
    return static_cast<std::uint8_t>(tagged_core_ & bit_mask);
  }
  [[nodiscard]] bool tracked() const noexcept { return (bits() & tracked_bit) != 0; }
  [[nodiscard]] bool has_snapshot() const noexcept { return (bits() & snapshot_bit) != 0; }
  /// The context a function handed over now runs in: a tracked executor's
  /// snapshot, else the caller's current context.
  [[nodiscard]] detail::captured_context context_to_run_in() const noexcept {
    return has_snapshot() ? snapshot_ : core().capture();
  }

  // The pool and the property bits in one word: with the snapshot the
  // executor is 24 bytes, small enough for any_io_executor to store inline
  // (no allocation, no shared reference count) when a coroutine uses it.
  std::uintptr_t tagged_core_;
  detail::captured_context snapshot_;  // meaningful when snapshot_bit is set
};

static_assert(sizeof(pool_executor) <= 24, "keep pool_executor within any_io_executor's buffer");

}  // namespace ctxpool

// The strand specialisation belongs with the executor: a strand of the pool
// made without it would run every handler of a batch in one context.
#include <ctxpool/asio/strand.hpp>
