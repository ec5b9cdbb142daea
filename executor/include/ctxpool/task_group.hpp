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
// The group's cancellation is made only when someone needs it (a cancel, a
// child's exception, a child reading its cancellation or capturing its
// context): until then it stands in for the one the child's snapshot
// carries (detail::cancellation_overlay), so a tree of groups costs nothing
// for it.
//
// A child is an ordinary task node of the pool. `run()` on a worker of the
// same pool pushes it on that worker's own deque (newest end), where other
// workers may steal it; from any other thread it goes through the pool's
// injection queue and onto a list that only the waiter takes, and a claim
// bit decides whether a worker or the waiter runs it. `wait()` runs on the
// waiting thread the group's children that no one has started — on a
// worker, everything queued on its deque since the group's first `run()`
// (the children, and what they queued meanwhile) and, while children run
// elsewhere, the oldest task of another worker's deque if it belongs to a
// group nested in one of this group's children (work-stealing's "steal
// back"; another group's child taken so goes onto that group's list, where
// its own waiter finds it); elsewhere, the children on its list — never
// unrelated pool work.
// It spins, then yields, then sleeps only while every remaining child runs
// on another thread. A child run by the waiter goes through everything a
// worker does for a task: a fresh context of its snapshot, its own
// `lifetime::task` slot scope with the waiter's own slot values hidden
// meanwhile, the pool's observers (so diagnostic mode counts it as a task),
// and the waiter's context and slots are as they were afterwards. Because a
// waiter can always run its own group's queued children, groups nest and
// recursive fork-join from pool workers cannot deadlock the pool, whatever
// its size.
//
// What a child costs in shared writes: a child queued on a worker's deque
// by a group made on a worker's stack is not counted in the pool's work
// count (the task the group is made in, which cannot end before the group
// is waited for, stands for it there; a group on the heap may outlive that
// task, so its children are counted), and the children the group's owner
// queues are counted in a plain count of the owner's thread, which its
// waiter counts down as it runs them; only a child that ends on another
// thread (stolen, or taken from the shared queue) touches the group's
// atomic count. So the common fork-join child, queued by a worker and
// popped back by its waiter, costs the deque's own push and pop and nothing
// else shared. A thread outside the pool that waits inside a child it runs
// for an enclosing group leaves that wait's children to the workers for a
// spin and runs only those still unclaimed after it (busy or blocked
// workers): its children go through the shared queue, and run here their
// own groups' would too, at several times a deque's cost, while the
// workers' deques stay empty.
//
// The first exception a child throws cancels the group: children not yet
// started are skipped, running ones see `this_task::cancelled()`, and
// `wait()` rethrows it (asyncio's TaskGroup, Java's StructuredTaskScope).
// `cancel()` does the same without an exception; `wait()` then returns
// `task_group_status::cancelled`. After `wait()` returns the group is empty,
// not cancelled, and may be used again.
//
// The group's state lives in the task_group object: a group allocates
// nothing of its own, and a child's last touch of it is the atomic count it
// finishes with, so the group may be destroyed as soon as `wait()` returns.
//
// @par Thread safety
// `run` and `cancel` may be called from any thread, also from the group's
// own children. `wait` is called by one thread at a time, the one that made
// the group (another thread's wait() still returns, but does not run the
// children queued on that thread's worker deque, and must come after the
// making thread's last run(), ordered with it as by a future or a join),
// and never from inside one of the group's own children.
//
// @par Lifetime
// The pool must outlive the group. A child may refer to the waiter's locals:
// `wait()` returns only once every child has finished or been skipped.
// Destroying a group that has children left without calling `wait()` is a
// mistake that neither hangs nor loses an exception: the destructor cancels
// the group (unstarted children are skipped), waits for the children already
// running, and hands a child's exception to the pool's exception handler (see
// `thread_pool::set_exception_handler`), as for `post`. Children queued from
// outside the workers after the pool was stopped are run by `wait()` on the
// waiting thread; a child left on a worker's deque when the pool stops is
// skipped (the group reports a cancellation). A group made inside another
// group's child must not outlive that child (its cancellation descends from
// that group's).
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

class task_group;

namespace detail {

class group_state;
struct task_group_access;

/// One child of a group: an ordinary counted task node of the pool, so that
/// workers run and steal it like any task. Its memory comes from the pool's
/// recycled task blocks.
///
/// Queued from a worker of the pool, it sits on that worker's own deque
/// only (`shared` false): whoever takes it from there runs it (or, if that
/// is another group's waiter, hands it back: see group_state::hand_back).
/// Queued from anywhere else, or handed back, it is also on the group's
/// list, which only the waiter takes, and `claim` decides who runs it: the
/// worker that took it from the pool's queues or the waiter, whichever sets
/// claimed first. Each side then sets its done bit; the side that sets the
/// second one frees it.
class group_child : public task_node {
 public:
  static constexpr std::uint32_t claimed = 1;
  static constexpr std::uint32_t queue_done = 2;  // the pool's side has let go
  static constexpr std::uint32_t list_done = 4;   // the waiter's side has let go

  group_state* const group;
  /// The cancellation the snapshot carries, for which the group's stands in
  /// while the child runs (cancellation_overlay::base).
  const cancel_state* const cancel_base;
  group_child* list_next = nullptr;  // the group's list; written before it is pushed
  bool shared = false;  // also on the group's list; set before it is queued (or handed back)
  /// Counted in the group's owner_pending_ (queued by the group's owner);
  /// set before it is queued.
  bool owner_counted = false;
  /// Counted in the pool's work count (see group_state::uncounted_children_);
  /// set before it is queued.
  bool pool_counted = true;
  std::atomic<std::uint32_t> claim{0};

  /// Whether the caller won the node's claim: it then runs it (or skips it).
  /// A side that sees the claim taken already needs no RMW for it.
  [[nodiscard]] bool try_claim() noexcept {
    return (claim.load(std::memory_order_relaxed) & claimed) == 0 &&
           (claim.fetch_or(claimed, std::memory_order_acq_rel) & claimed) == 0;
  }
  /// Runs the callable as a task on the calling thread (`run`) or destroys it
  /// unrun; either way the snapshot is released. The node's memory stays.
  void finish(bool run) noexcept { finish_(this, run); }
  /// Returns the node's memory to `core`, its group's pool (the group may
  /// be gone by then).
  void free(pool_core& core) noexcept;

 protected:
  using finish_fn = void (*)(group_child*, bool) noexcept;
  group_child(group_state& owner, finish_fn on_finish, std::size_t size,
              captured_context&& snapshot, const cancel_state* base,
              const task_info& info) noexcept;
  ~group_child() = default;

  captured_context snapshot_;
  task_info info_;

 private:
  finish_fn finish_;
  std::size_t size_;
};

/// A group's state, held in the task_group object itself: its children
/// hold a pointer to it, and it cannot go before they finish, because the
/// owner's wait() (or the destructor) returns only once none is pending.
class group_state {
 public:
  explicit group_state(pool_core& core);
  ~group_state();
  group_state(const group_state&) = delete;
  group_state& operator=(const group_state&) = delete;

  /// The snapshot a child started now gets: the current context as it is
  /// (the group's cancellation stands in for the one it carries, `base`,
  /// while the child runs).
  [[nodiscard]] captured_context child_snapshot(const cancel_state*& base) noexcept;
  /// Queues a constructed child: counts it, then hands it to the pool (and,
  /// from outside the pool's workers, to the waiter's list too). A
  /// `waiter_only` child queued by the owner outside the workers goes on
  /// the waiter's own list alone: only wait() runs it, and no worker is
  /// woken for it (parallel_for's share for its caller).
  void push(group_child* child, bool waiter_only = false) noexcept;
  /// Runs this group's queued children and waits for running ones; nothing
  /// rethrown. @returns the first exception (null if none) and whether the
  /// group was cancelled.
  std::pair<std::exception_ptr, bool> wait_for_children();
  void cancel() noexcept;
  /// Whether children not yet started would be skipped now: the group, or
  /// a cancellation it descends from, is cancelled.
  [[nodiscard]] bool skips_children() const noexcept { return cancelled_so_far(); }
  [[nodiscard]] bool cancelling() const noexcept {
    return cancelling_.load(std::memory_order_acquire);
  }
  /// The owner's waiter (or a thread that waits after the owner's last run()).
  [[nodiscard]] bool has_children() const noexcept {
    return !all_ended(pending_.load(std::memory_order_acquire));
  }
  /// Nothing left for wait() to do: no child left, none on the list, no
  /// exception kept (the owner's thread, as has_children).
  [[nodiscard]] bool settled() const noexcept {
    return !has_children() && !listed() && !has_error_.load(std::memory_order_acquire);
  }
  /// The group's cancellation, made now if nobody needed it before.
  [[nodiscard]] cancellation_token cancellation() const noexcept;
  /// The overlay's entry point: `owner` is the group.
  static const std::shared_ptr<cancel_state>* materialise(const void* owner) noexcept;
  [[nodiscard]] pool_core& core() noexcept { return core_; }

  /// Called by a child that threw: the first exception is kept, the group cancelled.
  void record_exception(std::exception_ptr error) noexcept;
  /// Runs (or, when the group no longer starts children, skips) `child`
  /// on the calling thread, then counts it finished.
  void execute(group_child& child) noexcept;
  /// Takes back a child of this group that another group's waiter took
  /// from a worker's deque and does not run: it becomes a shared child, on
  /// this group's list and the pool's queue.
  void hand_back(group_child* child) noexcept;

 private:
  /// pending_: the children queued or running, and the waiter-asleep flag.
  static constexpr std::uint32_t asleep = 1u << 31;
  static constexpr std::uint32_t count_mask = asleep - 1;

  /// Whether every child has ended, given a value of pending_: the two
  /// counts together, modulo count_mask + 1 (see owner_pending_).
  [[nodiscard]] bool all_ended(std::uint32_t shared) const noexcept {
    return ((shared + owner_pending_) & count_mask) == 0;
  }

  [[nodiscard]] bool starts_children() const noexcept { return !cancelled_so_far(); }
  /// Whether the group, or anything its cancellation descends from, is
  /// cancelled, without making the group's cancellation real.
  [[nodiscard]] bool cancelled_so_far() const noexcept;
  /// The group's cancellation, made on first use (a child of the parent
  /// group's, or of the one current where the group was made).
  const std::shared_ptr<cancel_state>& real_cancellation() const noexcept;
  /// Counts one child finished; wakes the waiter if it sleeps. The last
  /// touch of the group by a child: the waiter may return right after.
  void finish_one() noexcept;
  /// Adds `count` to pending_ (a child queued, or a hold on the group).
  void add_pending(std::uint32_t count) noexcept;
  /// Pushes a shared child on list_ (any thread).
  void push_on_list(group_child* child) noexcept;
  /// Puts a shared child, already on a list, on the pool's queue (counting
  /// it there unless `counted`: it already is, as a task taken back from a
  /// deque), then wakes the waiter if it sleeps.
  void queue_listed(group_child* child, bool counted) noexcept;
  /// Runs or lets go of every child on the lists (the waiter only).
  /// @returns whether any was run here.
  bool drain_list(std::optional<slot_shelf>& shelf) noexcept;
  /// drain_list for one list taken whole.
  bool drain(group_child* child, std::optional<slot_shelf>& shelf) noexcept;
  /// Whether a list holds a child (the owner's thread, as has_children).
  [[nodiscard]] bool listed() const noexcept {
    return own_list_ != nullptr || waiter_list_ != nullptr ||
           list_.load(std::memory_order_acquire) != nullptr;
  }
  /// Runs the tasks queued on the waiter's own worker since the first run().
  bool run_local(std::optional<slot_shelf>& shelf) noexcept;
  /// A waiter on a worker whose children were stolen: takes the oldest task
  /// of another worker's deque and runs it if it is this group's work (a
  /// child of it or of a group nested in one); another group's child goes
  /// back to that group (hand_back), any other task to the pool's queue.
  bool steal_back(std::optional<slot_shelf>& shelf) noexcept;
  [[nodiscard]] bool encloses(const group_state* group) const noexcept;

  pool_core& core_;
  const void* const owner_;  // the thread that made the group (its deque mark)
  // Made by a worker of the pool, on its stack: the children it queues on
  // a worker's deque are not counted in the pool's work count one by one
  // (the maker's task, which cannot end before the group is waited for,
  // stands for them).
  const bool uncounted_children_;
  // The cancellation is made only when someone needs it: a cancel, a
  // child's exception, a child asking for its cancellation or capturing its
  // context (see cancellation_overlay). Until then a tree of groups costs
  // nothing for it. A group made inside another's child descends from that
  // group's cancellation (parent_group_, which outlives the child and so
  // this group), else from the current one (parent_cancellation_).
  group_state* parent_group_ = nullptr;
  cancellation_token parent_cancellation_;
  // The outermost group of the tree (itself if none encloses it), which
  // counts the cancels made anywhere in the tree: while it reads 0, no
  // group of the tree is cancelled and a child's start looks at the
  // outermost parent_cancellation_ only, however deep the tree.
  group_state* root_ = this;
  std::atomic<std::uint32_t> cancels_in_tree_{0};
  // Made by const readers too (cancellation()), hence mutable.
  mutable std::optional<cancellation_source> cancel_;  // guarded by mutex_ until made_ is set
  mutable std::atomic<bool> made_{false};

  // The owner's worker deque position at its first run() since the last
  // wait: everything queued there above it belongs to the group's work (its
  // children, and what they and the owner queued meanwhile).
  std::int64_t local_mark_ = pool_core::no_local_mark;
  bool marked_ = false;

  mutable std::mutex mutex_;  // guards making the cancellation, and first_error_ (rare paths)
  std::exception_ptr first_error_;
  std::atomic<bool> has_error_{false};

  std::atomic<bool> cancelling_{false};
  // Children queued from outside the workers, newest first: by the owner
  // (its thread only), and by any other thread.
  group_child* own_list_ = nullptr;
  std::atomic<group_child*> list_{nullptr};
  // The owner's waiter_only children (its thread only): on no pool queue.
  group_child* waiter_list_ = nullptr;
  // Children queued or running, and `asleep`. The waiter sleeps on this
  // word (a futex): it sets `asleep` with a CAS on the value it saw, looks
  // at the list once more, and waits for the word to change. Whoever ends a
  // child clears `asleep` in the same RMW and then wakes it; whoever pushes
  // on the list looks for `asleep` after the push and clears it (a change of
  // the word the waiter's futex compares) before waking it.
  std::atomic<std::uint32_t> pending_{0};
  // The children the owner queued that its waiter has not ended: only the
  // owner's thread reads and writes it, so the common fork-join child
  // (queued by the owner, run by its waiter) costs no atomic count. Such a
  // child ended on any other thread (stolen, or popped by a wait() of
  // another group) counts down pending_ instead, which may then go below
  // zero: the two are read as one count, modulo count_mask + 1 (all_ended).
  // A thread other than the owner that calls wait() reads it too, so it
  // must do so after the owner's last run().
  std::uint32_t owner_pending_ = 0;
  bool owner_waiting_ = false;  // the owner's thread is inside wait(): its waiter ends them
};

/// The node for callable F.
template <class F>
class group_child_impl final : public group_child {
 public:
  template <class G>
  group_child_impl(group_state& owner, G&& f, captured_context&& snapshot, const cancel_state* base,
                   const task_info& info)
      : group_child(owner, &do_finish, sizeof(group_child_impl), std::move(snapshot), base, info) {
    std::construct_at(std::addressof(f_), std::forward<G>(f));
  }
  ~group_child_impl() {}  // f_ is destroyed by do_finish

 private:
  static void do_finish(group_child* base, bool run) noexcept {
    auto* self = static_cast<group_child_impl*>(base);
    if (run) {
      // Destroyed inside the task's scopes too, so that a destructor writing
      // slots or variables is cleaned up with the task.
      self->group->core().run_counted(
          [self] {
            // Inside the child's context: the group's cancellation stands
            // in for the one its snapshot carries.
            const cancellation_overlay overlay{self->cancel_base, &group_state::materialise,
                                               self->group};
            this_thread_overlay() = &overlay;
            try {
              self->f_();
            } catch (...) {
              self->group->record_exception(std::current_exception());
            }
            std::destroy_at(std::addressof(self->f_));
            this_thread_overlay() = nullptr;  // run_task puts back the enclosing one
          },
          std::move(self->snapshot_), self->info_);
    } else {
      std::destroy_at(std::addressof(self->f_));
      self->snapshot_ = {};
    }
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
    run_impl(std::forward<F>(f), where, /*waiter_only=*/false);
  }

  /// Runs this group's queued children on the calling thread and waits for
  /// those running elsewhere, until every child has finished or been skipped.
  /// @returns `cancelled` if `cancel()` was called, else `complete`.
  /// @throws the first exception a child threw (the rest were skipped).
  task_group_status wait();

  /// Cancels the group: children not yet started are skipped, running ones
  /// see their context cancelled (`this_task::cancelled()`), including work
  /// they started. Idempotent; `wait()` still has to be called.
  void cancel() noexcept { state_.cancel(); }

  /// Whether the group is cancelled (by `cancel()` or a child's exception)
  /// and not yet waited for.
  [[nodiscard]] bool is_cancelling() const noexcept { return state_.cancelling(); }

  /// The group's cancellation, as its children's contexts carry it.
  [[nodiscard]] cancellation_token cancellation() const noexcept { return state_.cancellation(); }

 private:
  friend struct detail::task_group_access;
  using captured_context_type = detail::captured_context;

  /// run(); `waiter_only` queues it for this group's wait() alone (see
  /// group_state::push).
  template <class F>
  void run_impl(F&& f, std::source_location where, bool waiter_only) {
    using node_type = detail::group_child_impl<std::decay_t<F>>;
    detail::pool_core& core = state_.core();
    const detail::cancel_state* base = nullptr;
    captured_context_type snapshot = state_.child_snapshot(base);
    void* block = core.allocate_task(sizeof(node_type));
    node_type* node;
    try {
      node = ::new (block) node_type(state_, std::forward<F>(f), std::move(snapshot), base,
                                     task_info{core.next_task_id(), where, {}});
    } catch (...) {
      core.free_task(block, sizeof(node_type));
      throw;
    }
    state_.push(node, waiter_only);
  }

  detail::group_state state_;
};

namespace detail {

/// The indices of one parallel_for, [0, count), shared by its runners (the
/// children that run the loop). Each runner starts on a part of its own,
/// the same part of the range on every call, so that a thread that loops
/// over the same data again finds its part in its cache; it takes its part
/// a step at a time from the front. A runner whose part is done takes the
/// back half of the largest part left (lazy splitting, as work-stealing
/// loops do), so an uneven range, or a participant that starts late or is
/// descheduled, still balances to within a step, and a runner that never
/// starts leaves nothing undone.
class loop_partition {
 public:
  /// The most indices one partition takes: a part is two 32-bit bounds in
  /// one atomic word.
  static constexpr std::size_t max_count = 0xffff'ffff;

  /// `count` indices (at most max_count) in `runners` parts, `step` at a time.
  loop_partition(std::size_t count, std::size_t runners, std::size_t step);
  loop_partition(const loop_partition&) = delete;
  loop_partition& operator=(const loop_partition&) = delete;

  /// The next indices [lo, hi) for runner `runner`: from its own part, else
  /// taken from another's. False once no part has any left.
  bool next(std::size_t runner, std::size_t& lo, std::size_t& hi) noexcept;
  /// No runner takes more indices (an index threw).
  void stop() noexcept { stopped_.store(true, std::memory_order_relaxed); }
  [[nodiscard]] bool stopped() const noexcept { return stopped_.load(std::memory_order_relaxed); }

 private:
  struct alignas(64) part {
    std::atomic<std::uint64_t> bounds;  // begin << 32 | end
  };
  std::unique_ptr<part[]> parts_;
  std::size_t runners_;
  std::size_t step_;
  std::atomic<bool> stopped_{false};
};

/// How many runners a parallel_for on `pool` from the calling thread gets:
/// as many as the pool has workers (at least 2), the caller taking one
/// worker's place when it is no worker itself, as the thread that enters a
/// oneTBB arena takes one of its slots. One more would only take turns with
/// the others where the pool is sized to the cores, and a runner
/// descheduled in the middle of a step holds up the end of the loop.
std::size_t loop_runners(thread_pool& pool) noexcept;

/// What parallel_for needs of a task_group beyond its public members.
struct task_group_access {
  template <class F>
  static void run_on_waiter(task_group& group, F&& f, std::source_location where) {
    group.run_impl(std::forward<F>(f), where, /*waiter_only=*/true);
  }
  /// Whether the group starts no more children (cancelled, by a child's
  /// exception or from an enclosing scope).
  static bool skips_children(const task_group& group) noexcept {
    return group.state_.skips_children();
  }
};

}  // namespace detail

/// How many steps `parallel_for` splits each runner's part into when no
/// grain is given: enough that the last steps, and the halves thieves take,
/// balance the loop to within a small fraction of it; few enough that a
/// step (one atomic update on the runner's own cache line) costs nothing
/// beside its indices.
inline constexpr std::size_t parallel_for_steps_per_runner = 64;

/// Calls `f(i)` for every `i` in [first, last), on the calling thread and
/// the pool's workers, and returns when every call has returned. The first
/// exception stops the loop: no runner starts a step after it (the rest of
/// a step under way elsewhere still runs), and it is rethrown here.
///
/// The loop runs as children of one task_group, its runners: as many as
/// the pool has workers (at least 2), the caller taking one of them when it
/// is no worker (so a pool of N runs the loop N wide, counting the caller).
/// Each runner starts on its own part of the range (the caller on the last)
/// and takes it `grain` indices at a time; a runner whose part is done
/// takes the back half of the largest part left.
/// `grain` 0 (the default) chooses a part's size / 64. Each runner, like
/// any child, runs in a fresh copy of the caller's context: the indices a
/// runner takes share that copy (a `set` in one index is seen by the next
/// ones of the same runner, never by the caller).
template <std::integral Index, class F>
  requires std::invocable<F&, Index>
void parallel_for(thread_pool& pool, Index first, std::type_identity_t<Index> last, F&& f,
                  std::size_t grain = 0,
                  std::source_location where = std::source_location::current()) {
  if (!(first < last)) return;
  using unsigned_index = std::make_unsigned_t<Index>;
  const auto total = static_cast<std::size_t>(static_cast<unsigned_index>(last - first));
  const std::size_t participants = detail::loop_runners(pool);
  // Ranges longer than a partition holds run as consecutive loops.
  for (std::size_t done = 0; done < total;) {
    const std::size_t count = std::min(total - done, detail::loop_partition::max_count);
    const Index base = static_cast<Index>(first + static_cast<Index>(done));
    const std::size_t runners = std::min(participants, count);
    const std::size_t step =
        grain != 0 ? grain
                   : std::max<std::size_t>(1, count / (runners * parallel_for_steps_per_runner));
    // Declared before the group, whose destructor (on an exception from
    // run()) waits for the runners that use them.
    detail::loop_partition partition(count, runners, step);
    const task_group* started_by = nullptr;
    const auto runner = [&f, &partition, &started_by, base](std::size_t part) {
      std::size_t lo = 0;
      std::size_t hi = 0;
      while (partition.next(part, lo, hi)) {
        if (partition.stopped() || detail::task_group_access::skips_children(*started_by)) return;
        try {
          for (std::size_t i = lo; i != hi; ++i)
            f(static_cast<Index>(base + static_cast<Index>(i)));
        } catch (...) {
          partition.stop();
          throw;
        }
      }
    };
    task_group group(pool);
    started_by = &group;
    // The others' parts first, for the workers; the caller's (the last)
    // only on its own queue: on a worker, the newest of its deque, which its
    // wait() takes first; elsewhere a list only its wait() runs, so that no
    // worker is woken for it.
    for (std::size_t part = 0; part + 1 < runners; ++part) {
      group.run([&runner, part] { runner(part); }, where);
    }
    detail::task_group_access::run_on_waiter(
        group, [&runner, part = runners - 1] { runner(part); }, where);
    group.wait();
    done += count;
  }
}

/// Calls `f(element)` for every element of a random-access range, as the
/// index overload does (the range must outlive the call, which it does: the
/// call returns when every call of `f` has returned).
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
