// Structured fork-join on a thread_pool: a task group whose waiter helps, and
// parallel_for built on it.
//
//     ctxpool::task_group group{pool};
//     for (auto& part : parts) group.run([&part] { process(part); });
//     group.wait();   // runs queued children here; rethrows the first exception
//
// Each child starts in a fresh copy of the context current at `run`, as a
// `submit`ted task does, and carries the group's cancellation (see
// <ctxpool/cancellation.hpp>): a child of the one current where the group was
// made, so cancelling an enclosing scope cancels the group's children too.
// `wait()` runs the group's children that no worker has started yet on the
// waiting thread (only this group's, never unrelated pool work), and sleeps
// only while every remaining child runs on another thread. A child run by the
// waiter goes through everything a worker does for a task: a fresh context of
// its snapshot, its own `lifetime::task` slot scope with the waiter's own
// slot values hidden meanwhile, the pool's observers (so diagnostic mode
// counts it as a task), and the waiter's context and slots are as they were
// afterwards. Because a waiter can always run its own group's queued
// children, groups nest and recursive fork-join from pool workers cannot
// deadlock the pool, whatever its size.
//
// The first exception a child throws cancels the group: children not yet
// started are skipped, running ones see `this_task::cancelled()`, and
// `wait()` rethrows it (asyncio's TaskGroup, Java's StructuredTaskScope).
// `cancel()` does the same without an exception; `wait()` then returns
// `task_group_status::cancelled`. After `wait()` returns the group is empty,
// not cancelled, and may be used again.
//
// Children reach the workers through at most one helper task per worker,
// queued on the pool: a helper runs queued children, oldest first, until
// none is left; the waiter takes the newest. A group of many children costs
// the pool a few tasks, not one per child.
//
// @par Thread safety
// `run` and `cancel` may be called from any thread, also from the group's
// own children. `wait` is called by one thread at a time (the group's owner),
// and never from inside one of the group's own children.
//
// @par Lifetime
// The pool must outlive the group. A child may refer to the waiter's locals:
// `wait()` returns only once every child has finished or been skipped.
// Destroying a group that has children left without calling `wait()` is a
// mistake that neither hangs nor loses an exception: the destructor cancels
// the group (unstarted children are skipped), waits for the children already
// running, and hands a child's exception to the pool's exception handler (see
// `thread_pool::set_exception_handler`), as for `post`. Children queued after
// the pool was joined or stopped are run by `wait()` on the waiting thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <source_location>
#include <type_traits>
#include <utility>

#include <ctxpool/cancellation.hpp>
#include <ctxpool/context.hpp>
#include <ctxpool/executor.hpp>
#include <ctxpool/hooks.hpp>

namespace ctxpool {

/// How `task_group::wait` ended without an exception.
enum class task_group_status {
  complete,   ///< every child ran to completion
  cancelled,  ///< `cancel()` was called: children not yet started were skipped
};

namespace detail {

class group_state;

/// One child of a group: queued in the group (an intrusive list) until the
/// waiter or a helper takes it. Its memory comes from the pool's recycled
/// task blocks.
class group_child {
 public:
  /// Runs the child as a task of `pool` on the calling thread (`run`), or
  /// destroys it unrun (a cancelled group); then frees it.
  void complete(group_state& group, bool run) noexcept { complete_(this, group, run); }

  group_child* prev = nullptr;  // towards the oldest; the group's mutex guards both links
  group_child* next = nullptr;

 protected:
  using complete_fn = void (*)(group_child*, group_state&, bool) noexcept;
  group_child(complete_fn on_complete, captured_context&& snapshot, const task_info& info) noexcept
      : snapshot_(std::move(snapshot)), info_(info), complete_(on_complete) {}
  ~group_child() = default;

  captured_context snapshot_;
  task_info info_;

 private:
  complete_fn complete_;
};

/// The state a group shares with its helper tasks: it outlives the
/// task_group object while a helper is still queued on the pool.
class group_state {
 public:
  explicit group_state(pool_core& core);
  ~group_state();
  group_state(const group_state&) = delete;
  group_state& operator=(const group_state&) = delete;

  /// The snapshot a child started now gets: the current context carrying
  /// the group's cancellation. Cached per current context map.
  [[nodiscard]] captured_context child_snapshot();
  /// Queues a child and makes sure a helper or the waiter will run it.
  void push(group_child* child);
  /// Runs queued children and waits for running ones; nothing rethrown.
  /// @returns the first exception (null if none) and whether it was cancelled.
  std::pair<std::exception_ptr, bool> wait_for_children();
  void cancel() noexcept;
  [[nodiscard]] bool cancelling() const noexcept {
    return cancelling_.load(std::memory_order_acquire);
  }
  [[nodiscard]] bool has_children() const noexcept {
    return pending_.load(std::memory_order_acquire) != 0;
  }
  [[nodiscard]] cancellation_token cancellation() const noexcept { return cancel_.token(); }

  /// Called by a child that threw: the first exception is kept, the group cancelled.
  void record_exception(std::exception_ptr error) noexcept;
  [[nodiscard]] pool_core& core() noexcept { return core_; }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept;

  /// Unlinks the group from the group whose child made it (the task_group
  /// is going away): no waiter looks into it from now on.
  void detach_from_parent() noexcept;

  /// A helper task's body: runs queued children, oldest first.
  void help() noexcept;
  /// A helper task destroyed unrun (the pool stopped): frees its slot.
  void helper_abandoned() noexcept;

 private:
  [[nodiscard]] group_child* pop_newest() noexcept;
  [[nodiscard]] group_child* pop_oldest() noexcept;
  [[nodiscard]] bool try_take_helper_slot() noexcept;
  void post_helper() noexcept;
  void execute(group_child* child) noexcept;
  /// The oldest queued child of a group made inside one of this group's
  /// children (at any depth), with a reference to its group in `owner`.
  [[nodiscard]] group_child* steal_from_nested(group_state*& owner) noexcept;
  /// Wakes the waiters of the groups this one is nested in, if asleep.
  void signal_ancestors() noexcept;
  /// Runs one queued child of a nested group, if there is one.
  bool run_nested_child(std::optional<slot_shelf>& shelf) noexcept;
  void signal_waiter() noexcept;
  void drop_snapshot_cache() noexcept;  // with mutex_ held

  pool_core& core_;
  const int max_helpers_;
  std::atomic<std::uint32_t> refs_{1};
  cancellation_source cancel_;
  cancellation_token parent_cancellation_;  // what cancel_ is remade from after a cancel

  // Nesting: a group made while a child of another runs on the same thread
  // is linked under it, so that the outer waiter, instead of sleeping while
  // that child runs elsewhere, runs the nested groups' queued children (its
  // own work, one level down; a work-stealing pool's waiter does the same).
  // The links are guarded by the outer group's mutex; locks are taken outer
  // before inner only.
  group_state* parent_ = nullptr;  // holds a reference while linked
  group_state* first_nested_ = nullptr;
  group_state* prev_sibling_ = nullptr;
  group_state* next_sibling_ = nullptr;
  std::atomic<bool> has_nested_{false};  // first_nested_ != nullptr, readable without the lock
  void update_nested_hint() noexcept {   // with mutex_ held
    has_nested_.store(first_nested_ != nullptr, std::memory_order_relaxed);
  }

  std::mutex mutex_;  // guards the list, the snapshot cache and first_error_
  group_child* oldest_ = nullptr;
  group_child* newest_ = nullptr;
  std::exception_ptr first_error_;
  const map_node* cached_map_ = nullptr;  // the context map the cache was made from (one reference)
  captured_context cached_child_;         // that map plus the group's cancellation
  bool cache_valid_ = false;

  // No line of their own: a group is short-lived and small, and an
  // over-aligned allocation costs a tree of groups more than the sharing.
  // The helper protocol pairs queued_ with
  // helpers_ (both seq_cst): a helper that gives up its slot looks at queued_
  // again, a pusher looks at helpers_ after queueing, so no child is left
  // with neither a helper nor the waiter to run it.
  std::atomic<std::size_t> queued_{0};
  std::atomic<int> helpers_{0};
  std::atomic<std::size_t> pending_{0};  // queued or running children
  std::atomic<bool> cancelling_{false};
  // The waiter sleeps on signal_ (C++20 atomic wait); whoever changes what it
  // waits for (pending_, queued_) then finds waiter_asleep_ set bumps signal_
  // and wakes it: each side stores, then loads, seq_cst.
  std::atomic<std::uint32_t> signal_{0};
  std::atomic<bool> waiter_asleep_{false};
};

/// The node for callable F.
template <class F>
class group_child_impl final : public group_child {
 public:
  template <class G>
  group_child_impl(G&& f, captured_context&& snapshot, const task_info& info)
      : group_child(&do_complete, std::move(snapshot), info) {
    std::construct_at(std::addressof(f_), std::forward<G>(f));
  }
  ~group_child_impl() {}  // f_ is destroyed by do_complete

 private:
  static void do_complete(group_child* base, group_state& group, bool run) noexcept {
    auto* self = static_cast<group_child_impl*>(base);
    pool_core& core = group.core();
    if (run) {
      // Destroyed inside the task's scopes too, so that a destructor writing
      // slots or variables is cleaned up with the task.
      core.run_inline(
          [self, &group] {
            try {
              self->f_();
            } catch (...) {
              group.record_exception(std::current_exception());
            }
            std::destroy_at(std::addressof(self->f_));
          },
          std::move(self->snapshot_), /*continuation=*/false, self->info_);
    } else {
      std::destroy_at(std::addressof(self->f_));
    }
    self->~group_child_impl();
    core.free_task(self, sizeof(group_child_impl));
  }

  union {
    F f_;
  };
};

}  // namespace detail

/// A set of child tasks that one thread waits for, helping to run them.
class task_group {
 public:
  /// An empty group running its children on `pool`. Its cancellation is a
  /// child of the one the current context carries.
  explicit task_group(thread_pool& pool);
  /// See the header's Lifetime paragraph: cancels and waits if children are left.
  ~task_group();
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;

  /// Starts `f()` as a child, in a fresh copy of the current context that
  /// carries the group's cancellation. Accepts move-only callables. If the
  /// group is cancelled (or a child threw) before `f` starts, `f` is
  /// destroyed without running.
  template <class F>
  void run(F&& f, std::source_location where = std::source_location::current()) {
    using node_type = detail::group_child_impl<std::decay_t<F>>;
    detail::pool_core& core = state_->core();
    captured_context_type snapshot = state_->child_snapshot();
    void* block = core.allocate_task(sizeof(node_type));
    node_type* node;
    try {
      node = ::new (block) node_type(std::forward<F>(f), std::move(snapshot),
                                     task_info{core.next_task_id(), where, {}});
    } catch (...) {
      core.free_task(block, sizeof(node_type));
      throw;
    }
    state_->push(node);
  }

  /// Runs this group's queued children on the calling thread and waits for
  /// those running elsewhere, until every child has finished or been skipped.
  /// @returns `cancelled` if `cancel()` was called, else `complete`.
  /// @throws the first exception a child threw (the rest were skipped).
  task_group_status wait();

  /// Cancels the group: children not yet started are skipped, running ones
  /// see their context cancelled (`this_task::cancelled()`), including work
  /// they started. Idempotent; `wait()` still has to be called.
  void cancel() noexcept { state_->cancel(); }

  /// Whether the group is cancelled (by `cancel()` or a child's exception)
  /// and not yet waited for.
  [[nodiscard]] bool is_cancelling() const noexcept { return state_->cancelling(); }

  /// The group's cancellation, as its children's contexts carry it.
  [[nodiscard]] cancellation_token cancellation() const noexcept { return state_->cancellation(); }

 private:
  using captured_context_type = detail::captured_context;
  detail::group_state* state_;
};

/// The number of chunks `parallel_for` splits a range into when no grain is
/// given: enough per participant (the workers and the caller) that a slow
/// chunk is made up for by others, few enough that queueing them is cheap.
inline constexpr std::size_t parallel_for_chunks_per_thread = 8;

/// Calls `f(i)` for every `i` in [first, last), in chunks run as children of
/// one task_group (so the calling thread works too, and the first exception
/// skips the chunks not yet started and is rethrown here).
///
/// `grain` is the most indices one chunk takes; 0 (the default) chooses
/// (last - first) / (8 × (workers + 1)), rounded up: about eight chunks per
/// participant, which workers take oldest first and the caller newest first,
/// so an uneven range still balances. Each chunk, like any child, runs in a
/// fresh copy of the caller's context.
template <std::integral Index, class F>
  requires std::invocable<F&, Index>
void parallel_for(thread_pool& pool, Index first, std::type_identity_t<Index> last, F&& f,
                  std::size_t grain = 0,
                  std::source_location where = std::source_location::current()) {
  if (!(first < last)) return;
  using unsigned_index = std::make_unsigned_t<Index>;
  const auto count = static_cast<std::size_t>(static_cast<unsigned_index>(last - first));
  if (grain == 0) {
    const std::size_t chunks = parallel_for_chunks_per_thread * (pool.thread_count() + 1);
    grain = std::max<std::size_t>(1, (count + chunks - 1) / chunks);
  }
  task_group group(pool);
  // Chunks are queued newest-last: the caller (newest first) starts at the
  // end of the range while the helpers start at its beginning.
  for (std::size_t offset = 0; offset < count; offset += grain) {
    const Index lo = static_cast<Index>(first + static_cast<Index>(offset));
    const Index hi =
        static_cast<Index>(first + static_cast<Index>(std::min(count, offset + grain)));
    group.run(
        [&f, lo, hi] {
          for (Index i = lo; i != hi; ++i) f(i);
        },
        where);
  }
  group.wait();
}

/// Calls `f(element)` for every element of a random-access range, as the
/// index overload does (the range must outlive the call, which it does: the
/// call returns when every chunk has finished).
template <std::ranges::random_access_range Range, class F>
  requires std::ranges::sized_range<Range> &&
           std::invocable<F&, std::ranges::range_reference_t<Range>>
void parallel_for(thread_pool& pool, Range&& range, F&& f, std::size_t grain = 0,
                  std::source_location where = std::source_location::current()) {
  auto begin = std::ranges::begin(range);
  const auto size = static_cast<std::size_t>(std::ranges::size(range));
  parallel_for(
      pool, std::size_t{0}, size,
      [&f, begin](std::size_t i) {
        f(begin[static_cast<std::ranges::range_difference_t<Range>>(i)]);
      },
      grain, where);
}

}  // namespace ctxpool
