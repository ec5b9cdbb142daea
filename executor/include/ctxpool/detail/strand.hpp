// asio::strand<ctxpool::pool_executor>: a strand that keeps each handler's context.
//
// Asio's strand queues handlers itself and runs a batch of them inside one
// call of the inner executor, so the inner executor alone cannot give each
// handler its own context: all would run in the context of the first. This
// specialisation binds each handler to its context when it is handed to the
// strand (a tracked strand's captured one, else the caller's) and runs it as
// a nested pool task; Asio's own strand implementation, over the pool's
// executor under a distinct type (`strand_inner`), does the serialising.
//
// The strand object is one tagged pointer plus a context snapshot, 24 bytes,
// so that any_io_executor (what a coroutine on the strand holds) stores it
// inline rather than behind a shared, fence-synchronised reference count.
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>
#include <boost/asio/strand.hpp>

namespace ctxpool::detail {

/// The pool's executor under a type of its own, so that Asio's primary strand
/// template implements the queue beneath the specialisation.
class strand_inner {
 public:
  explicit strand_inner(pool_executor executor) noexcept : executor_(std::move(executor)) {}

  template <class F>
  void execute(F&& f) const {
    executor_.execute(std::forward<F>(f));
  }
  template <class P>
  auto query(const P& p) const noexcept -> decltype(std::declval<const pool_executor&>().query(p)) {
    return executor_.query(p);
  }
  template <class P>
    requires requires(const pool_executor& e, const P& p) { e.require(p); }
  strand_inner require(const P& p) const {
    return strand_inner(executor_.require(p));
  }

  friend bool operator==(const strand_inner& a, const strand_inner& b) noexcept {
    return a.executor_ == b.executor_;
  }
  friend bool operator!=(const strand_inner& a, const strand_inner& b) noexcept {
    return !(a == b);
  }

 private:
  pool_executor executor_;
};

/// What all copies of one strand share: Asio's strand over the pool.
struct alignas(16) strand_state {
  strand_state(pool_core& pool, const pool_executor& plain)
      : core(&pool), impl(strand_inner(plain)) {}
  std::atomic<std::uint32_t> refs{1};
  pool_core* core;
  boost::asio::strand<strand_inner> impl;
};

/// One handler given to a strand, with the context it must run in.
template <class F>
class strand_task {
 public:
  template <class G>
  strand_task(pool_core& core, captured_context snapshot, G&& f)
      : core_(&core), snapshot_(std::move(snapshot)), f_(std::forward<G>(f)) {}

  void operator()() {
    core_->run_inline(std::move(f_), std::move(snapshot_), /*continuation=*/true,
                      task_info{core_->next_task_id(), {}, "asio strand handler"});
  }

 private:
  pool_core* core_;
  captured_context snapshot_;
  F f_;
};

}  // namespace ctxpool::detail

namespace boost::asio {

/// A strand over a ctxpool pool: handlers run one at a time, each in the
/// context that was current when it was handed to the strand (or the context
/// a tracked strand captured), with its own slot wipe, as a pool task.
template <>
class strand<ctxpool::pool_executor> {
  using pool_executor = ctxpool::pool_executor;
  using state_type = ctxpool::detail::strand_state;
  static constexpr std::uintptr_t bit_mask = 15;

 public:
  using inner_executor_type = pool_executor;

  /// A new strand on the pool of `executor`, with its properties.
  explicit strand(const pool_executor& executor)
      : tagged_(reinterpret_cast<std::uintptr_t>(
                    new state_type(executor.core(), pool_executor(&executor.core(), {}, 0))) |
                executor.bits()),
        snapshot_(executor.snapshot_) {
    if (tracked()) state().core->add_tracked();
  }

  strand(const strand& other) noexcept : tagged_(other.tagged_), snapshot_(other.snapshot_) {
    state().refs.fetch_add(1, std::memory_order_relaxed);
    if (tracked()) state().core->add_tracked();
  }
  strand(strand&& other) noexcept : strand(static_cast<const strand&>(other)) {}
  strand& operator=(const strand& other) noexcept {
    strand copy(other);
    std::swap(tagged_, copy.tagged_);
    std::swap(snapshot_, copy.snapshot_);
    return *this;
  }
  strand& operator=(strand&& other) noexcept { return *this = static_cast<const strand&>(other); }
  ~strand() {
    if (tracked()) state().core->remove_tracked();
    if (state().refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete &state();
  }

  /// The pool's executor this strand runs on, with the strand's properties.
  [[nodiscard]] inner_executor_type get_inner_executor() const noexcept {
    return pool_executor(state().core, snapshot_, static_cast<std::uint8_t>(bits()));
  }

  [[nodiscard]] execution::outstanding_work_t query(execution::outstanding_work_t) const noexcept {
    if (tracked()) return execution::outstanding_work.tracked;
    return execution::outstanding_work.untracked;
  }
  template <class P>
    requires(!std::is_same_v<P, execution::outstanding_work_t>)
  auto query(const P& p) const noexcept -> decltype(std::declval<const pool_executor&>().query(p)) {
    return plain().query(p);
  }

  [[nodiscard]] strand require(execution::blocking_t::possibly_t) const {
    return with_bits(bits() & ~unsigned{pool_executor::never_bit}, snapshot_);
  }
  [[nodiscard]] strand require(execution::blocking_t::never_t) const {
    return with_bits(bits() | pool_executor::never_bit, snapshot_);
  }
  [[nodiscard]] strand require(execution::relationship_t::fork_t) const {
    return with_bits(bits() & ~unsigned{pool_executor::continuation_bit}, snapshot_);
  }
  [[nodiscard]] strand require(execution::relationship_t::continuation_t) const {
    return with_bits(bits() | pool_executor::continuation_bit, snapshot_);
  }
  /// Counts as outstanding work and captures the current context, as the
  /// pool's executor does.
  [[nodiscard]] strand require(execution::outstanding_work_t::tracked_t) const {
    return with_bits(bits() | pool_executor::tracked_bit | pool_executor::snapshot_bit,
                     state().core->propagates() ? ctxpool::detail::captured_context::capture()
                                                : ctxpool::detail::captured_context{});
  }
  [[nodiscard]] strand require(execution::outstanding_work_t::untracked_t) const {
    return with_bits(bits() & ~unsigned{pool_executor::tracked_bit | pool_executor::snapshot_bit}, {});
  }

  /// Queues `f` on the strand, bound to its context now.
  template <class F>
  void execute(F&& f) const {
    ctxpool::detail::pool_core& core = *state().core;
    ctxpool::detail::captured_context snapshot =
        (bits() & pool_executor::snapshot_bit) != 0
            ? snapshot_
            : (core.propagates() ? ctxpool::detail::captured_context::capture()
                                 : ctxpool::detail::captured_context{});
    ctxpool::detail::strand_task<std::decay_t<F>> task(core, std::move(snapshot),
                                                       std::forward<F>(f));
    const strand<ctxpool::detail::strand_inner>& impl = state().impl;
    const bool never = (bits() & pool_executor::never_bit) != 0;
    const bool continuation = (bits() & pool_executor::continuation_bit) != 0;
    if (never && continuation) {
      boost::asio::require(impl, execution::blocking.never, execution::relationship.continuation)
          .execute(std::move(task));
    } else if (never) {
      boost::asio::require(impl, execution::blocking.never).execute(std::move(task));
    } else if (continuation) {
      boost::asio::require(impl, execution::relationship.continuation).execute(std::move(task));
    } else {
      impl.execute(std::move(task));
    }
  }

  /// Whether the calling thread is running a handler of this strand.
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return state().impl.running_in_this_thread();
  }

  /// The same strand (queue) with the same properties.
  friend bool operator==(const strand& a, const strand& b) noexcept {
    return a.tagged_ == b.tagged_;
  }
  friend bool operator!=(const strand& a, const strand& b) noexcept { return !(a == b); }

 private:
  strand(std::uintptr_t tagged, ctxpool::detail::captured_context snapshot) noexcept
      : tagged_(tagged), snapshot_(std::move(snapshot)) {
    state().refs.fetch_add(1, std::memory_order_relaxed);
    if (tracked()) state().core->add_tracked();
  }
  [[nodiscard]] strand with_bits(unsigned bits, ctxpool::detail::captured_context snapshot) const {
    return strand((tagged_ & ~bit_mask) | bits, std::move(snapshot));
  }
  [[nodiscard]] state_type& state() const noexcept {
    return *reinterpret_cast<state_type*>(tagged_ & ~bit_mask);
  }
  [[nodiscard]] unsigned bits() const noexcept { return static_cast<unsigned>(tagged_ & bit_mask); }
  [[nodiscard]] bool tracked() const noexcept { return (bits() & pool_executor::tracked_bit) != 0; }
  /// The pool's executor with this strand's blocking and relationship, for queries.
  [[nodiscard]] pool_executor plain() const noexcept {
    return pool_executor(state().core, {},
                         static_cast<std::uint8_t>(bits() & (pool_executor::never_bit |
                                                             pool_executor::continuation_bit)));
  }

  std::uintptr_t tagged_;  // strand_state* | the pool_executor property bits
  ctxpool::detail::captured_context snapshot_;
};

static_assert(sizeof(strand<ctxpool::pool_executor>) <= 24,
              "keep the strand within any_io_executor's inline buffer");

}  // namespace boost::asio
