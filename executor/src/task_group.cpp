// task_group: how children reach the pool, the helping waiter, and the
// group's completion count.
#include <ctxpool/task_group.hpp>

#include <pthread.h>

#include <algorithm>
#include <cstdint>
#include <thread>

#include <ctxpool/detail/small_alloc.hpp>

namespace ctxpool {
namespace detail {
namespace {

/// Spins before the waiter sleeps: a child of a fork-join is often short,
/// and a futex round trip costs more than several of them.
constexpr int waiter_spins = 256;
/// Then how many times it yields its core, looking again after each.
constexpr int waiter_yields = 64;
/// How often (in spins) such a waiter on a worker looks for its group's work
/// on the other workers' deques.
constexpr int steal_interval = 16;

inline void spin_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

/// The group whose child runs on this thread now (innermost): wait() from
/// inside one of the group's own children would wait for itself.
constinit thread_local const group_state* running_child_of = nullptr;

/// Its address identifies the calling thread (cheaper than a thread id).
constinit thread_local char thread_tag = 0;

/// The calling thread's stack, [low, high), found at its first look (high
/// stays 1 if it cannot be found: nothing is then on it).
struct stack_bounds {
  std::uintptr_t low = 0;
  std::uintptr_t high = 0;
};
constinit thread_local stack_bounds this_stack{};

bool on_this_stack(const void* object) noexcept {
  if (this_stack.high == 0) {
    this_stack = {1, 1};
#if defined(__GLIBC__)
    // glibc's extension; elsewhere nothing counts as on the stack, so every
    // group's children are counted (correct, a little dearer).
    pthread_attr_t attributes;
    if (pthread_getattr_np(pthread_self(), &attributes) == 0) {
      void* low = nullptr;
      std::size_t size = 0;
      if (pthread_attr_getstack(&attributes, &low, &size) == 0) {
        const auto base = reinterpret_cast<std::uintptr_t>(low);
        this_stack = {base, base + size};
      }
      pthread_attr_destroy(&attributes);
    }
#endif
  }
  const auto address = reinterpret_cast<std::uintptr_t>(object);
  return address >= this_stack.low && address < this_stack.high;
}

/// How many group children this thread, which is no worker of their pool,
/// is running as their waiter (nested): see wait_for_children.
constinit thread_local int children_run_outside = 0;

/// The pool's entry point for a child taken from its queues (run) or
/// destroyed with them (not run).
void complete_child(task_node* base, pool_core& core, bool run) noexcept {
  auto* child = static_cast<group_child*>(base);
  if (!child->shared) {
    // Only here: nobody else can run it. If the pool never counted it
    // (push_local), execute settles it instead.
    const bool counted = child->pool_counted;
    if (!run) {
      // The pool stopped with it queued; its group still counts it, so
      // finish it as skipped (the group will report a cancellation).
      child->group->cancel();
    }
    child->group->execute(*child);
    child->free(core);
    if (counted) core.remove_finished_task();
    return;
  }
  // Also on the waiter's list. A child destroyed with the pool's queues
  // is left to the waiter, which runs it.
  if (run && child->try_claim()) child->group->execute(*child);
  if (child->claim.fetch_or(group_child::queue_done, std::memory_order_acq_rel) &
      group_child::list_done) {
    child->free(core);
  }
  core.remove_finished_task();
}

}  // namespace

group_child::group_child(group_state& owner, finish_fn on_finish, std::size_t size,
                         captured_context&& snapshot, const cancel_state* base,
                         const task_info& info) noexcept
    : task_node(&complete_child),
      group(&owner),
      cancel_base(base),
      snapshot_(std::move(snapshot)),
      info_(info),
      finish_(on_finish),
      size_(size) {}

void group_child::free(pool_core& core) noexcept {
  const std::size_t size = size_;
  const bool from_a_worker = !shared;
  this->~group_child();
  if (from_a_worker) {
    // Made by a worker, which forks again soon, most often freed by that
    // same worker: its own cache, with no shared stack on the way back.
    small_free(this, size);
  } else {
    core.free_task(this, size);
  }
}

group_state::group_state(pool_core& core)
    : core_(core),
      owner_(&thread_tag),
      // On its maker's stack, it is waited for before the frame holding it
      // returns, so before the task that frame is in ends: that counted
      // task stands for the children in the pool's work count. A group on
      // the heap (or a coroutine frame) may outlive its maker's task.
      uncounted_children_(core.running_in_this_thread() && on_this_stack(this)) {
  // Made inside a child of another group (of any pool): descend from that
  // group's cancellation without making it real now.
  const cancellation_overlay* overlay = applicable_overlay();
  if (overlay != nullptr && overlay->materialise == &group_state::materialise) {
    parent_group_ = const_cast<group_state*>(static_cast<const group_state*>(overlay->owner));
    root_ = parent_group_->root_;
  } else {
    parent_cancellation_ = current_cancellation();
  }
}

const std::shared_ptr<cancel_state>& group_state::real_cancellation() const noexcept {
  if (!made_.load(std::memory_order_acquire)) {
    // The parent's first, outside our lock: locks are only taken up the chain.
    cancellation_token parent =
        parent_group_ != nullptr ? parent_group_->cancellation() : parent_cancellation_;
    bool cancel_now = false;
    {
      std::lock_guard lock(mutex_);
      if (!made_.load(std::memory_order_relaxed)) {
        cancel_.emplace(parent);
        made_.store(true, std::memory_order_release);
        cancel_now = cancelling_.load(std::memory_order_acquire);
      }
    }
    // A cancel() before it existed found nothing to cancel.
    if (cancel_now) cancel_->cancel();
  }
  return cancellation_access::state(*cancel_);
}

cancellation_token group_state::cancellation() const noexcept {
  (void)real_cancellation();
  return cancel_->token();
}

const std::shared_ptr<cancel_state>* group_state::materialise(const void* owner) noexcept {
  return &static_cast<const group_state*>(owner)->real_cancellation();
}

bool group_state::cancelled_so_far() const noexcept {
  // Acquire: pairs with cancel()'s count, made after its flag.
  if (root_->cancels_in_tree_.load(std::memory_order_acquire) == 0) {
    // A made cancellation can only be cancelled through a group (which
    // counts) or from above the tree.
    return root_->parent_cancellation_.cancelled();
  }
  for (const group_state* group = this;; group = group->parent_group_) {
    if (group->cancelling_.load(std::memory_order_acquire)) return true;
    // Once made, it knows its whole chain (a cancel of an ancestor, a deadline).
    if (group->made_.load(std::memory_order_acquire)) return group->cancel_->cancelled();
    if (group->parent_group_ == nullptr) return group->parent_cancellation_.cancelled();
  }
}

group_state::~group_state() = default;

captured_context group_state::child_snapshot(const cancel_state*& base) noexcept {
  // The context as it is. A group made inside another group's child
  // descends from that group (parent_group_), so the overlay that would
  // make that group's cancellation real at a capture is kept out of the way.
  // No cache: a capture is a reference taken from the thread's batch.
  const cancellation_overlay* const overlay = std::exchange(active_overlay, nullptr);
  captured_context snapshot = captured_context::capture();
  base = carried_cancel_state();
  active_overlay = overlay;
  return snapshot;
}

void group_state::add_pending(std::uint32_t count) noexcept {
  // Within count_mask: the count may sit at its top (below zero, see
  // owner_pending_), and a carry would flip `asleep` without a wake-up.
  std::uint32_t seen = pending_.load(std::memory_order_relaxed);
  while (!pending_.compare_exchange_weak(seen, (seen & asleep) | ((seen + count) & count_mask),
                                         std::memory_order_relaxed)) {
  }
}

void group_state::push(group_child* child, bool waiter_only) noexcept {
  // A thread that is neither the owner nor inside one of the group's
  // children could see the waiter return, and the group go, as soon as the
  // child is queued: it holds one more count until it is done with the
  // group (as hand_back does).
  const bool hold = owner_ != &thread_tag && running_child_of != this;
  // Counted before anyone can finish it: by the owner in its plain count
  // (its waiter ends most of what it queues), by anyone else in the shared one.
  if (owner_ == &thread_tag) {
    if (!marked_) {
      local_mark_ = core_.local_mark();
      marked_ = true;
    }
    child->owner_counted = true;
    ++owner_pending_;
  } else {
    add_pending(hold ? 2 : 1);
  }
  child->pool_counted = !uncounted_children_;
  if (core_.push_local(child, child->pool_counted)) {
    if (hold) finish_one();
    return;
  }
  child->pool_counted = true;  // by push_injected, or on no pool queue at all
  child->shared = true;
  if (waiter_only && child->owner_counted) {
    // No worker will see it, so none is woken for it; the pool's side of
    // the claim has nothing to let go of.
    child->claim.store(group_child::queue_done, std::memory_order_relaxed);
    child->list_next = waiter_list_;
    waiter_list_ = child;
    return;
  }
  // On a list first: once it is on the pool's queue a worker may run it,
  // and the group must then already know it for the waiter to let it go.
  // The owner's own list is its thread's alone: its waiter drains it.
  if (child->owner_counted) {
    child->list_next = own_list_;
    own_list_ = child;
  } else {
    push_on_list(child);
  }
  queue_listed(child, /*counted=*/false);
  if (hold) finish_one();
}

void group_state::push_on_list(group_child* child) noexcept {
  group_child* head = list_.load(std::memory_order_relaxed);
  do {
    child->list_next = head;
  } while (!list_.compare_exchange_weak(head, child, std::memory_order_seq_cst,
                                        std::memory_order_relaxed));
}

void group_state::queue_listed(group_child* child, bool counted) noexcept {
  if (counted) {
    core_.requeue(child);
  } else if (!core_.push_injected(child)) {
    // The pool is stopping: only the waiter will run it (it may be doing so
    // already, if this is a child's run()).
    if (child->claim.fetch_or(group_child::queue_done, std::memory_order_acq_rel) &
        group_child::list_done) {
      child->free(core_);
    }
  }
  // Pairs with the waiter's CAS that sets `asleep` and its look at the list
  // that follows (both seq_cst): one of the two sees the other.
  if (pending_.load(std::memory_order_seq_cst) & asleep) {
    if (pending_.fetch_and(~asleep, std::memory_order_seq_cst) & asleep) pending_.notify_all();
  }
}

void group_state::execute(group_child& child) noexcept {
  const group_state* const outer = std::exchange(running_child_of, this);
  child.finish(starts_children());
  running_child_of = outer;
  // Before the count: once the owner sees it, its task (which stood for
  // this uncounted child in the pool's work count) may end.
  if (!child.pool_counted) core_.settle_uncounted_task();
  // Queued by the owner and ended by its waiter: only that thread counts it.
  if (child.owner_counted && owner_ == &thread_tag && owner_waiting_) {
    --owner_pending_;
    return;
  }
  finish_one();
}

void group_state::finish_one() noexcept {
  // Release: the child's effects happen before the waiter sees the count.
  // Modulo count_mask + 1: a child the owner counted in its plain count and
  // another thread ended takes the shared count below zero.
  std::uint32_t seen = pending_.load(std::memory_order_relaxed);
  while (!pending_.compare_exchange_weak(seen, (seen - 1) & count_mask, std::memory_order_acq_rel,
                                         std::memory_order_relaxed)) {
  }
  // Only the word's address, no access to the group: the waiter may have
  // returned and the group be gone (a futex wake on it is harmless; it is
  // what std::latch does).
  if (seen & asleep) pending_.notify_all();
}

void group_state::record_exception(std::exception_ptr error) noexcept {
  if (!has_error_.exchange(true, std::memory_order_acq_rel)) {
    std::lock_guard lock(mutex_);
    first_error_ = std::move(error);
  }
  cancel();
}

void group_state::cancel() noexcept {
  bool made = false;
  {
    std::lock_guard lock(mutex_);
    cancelling_.store(true, std::memory_order_release);
    made = made_.load(std::memory_order_relaxed);
  }
  root_->cancels_in_tree_.fetch_add(1, std::memory_order_acq_rel);
  // Outside the lock: cancelling runs callbacks, which may start work here.
  // Not made yet: whoever makes it cancels it (real_cancellation).
  if (made) cancel_->cancel();
}

bool group_state::drain_list(std::optional<slot_shelf>& shelf) noexcept {
  bool ran = false;
  if (waiter_list_ != nullptr) ran = drain(std::exchange(waiter_list_, nullptr), shelf);
  if (own_list_ != nullptr) ran = drain(std::exchange(own_list_, nullptr), shelf) || ran;
  if (list_.load(std::memory_order_acquire) != nullptr) {
    ran = drain(list_.exchange(nullptr, std::memory_order_seq_cst), shelf) || ran;
  }
  return ran;
}

bool group_state::drain(group_child* child, std::optional<slot_shelf>& shelf) noexcept {
  bool ran = false;
  // Newest first, as on a worker's own deque.
  while (child != nullptr) {
    group_child* const next = child->list_next;
    if (child->try_claim()) {
      if (!shelf) shelf.emplace();
      const bool outside = !core_.running_in_this_thread();
      children_run_outside += outside ? 1 : 0;
      execute(*child);
      children_run_outside -= outside ? 1 : 0;
      ran = true;
    }
    if (child->claim.fetch_or(group_child::list_done, std::memory_order_acq_rel) &
        group_child::queue_done) {
      child->free(core_);
    }
    child = next;
  }
  return ran;
}

bool group_state::run_local(std::optional<slot_shelf>& shelf) noexcept {
  // The mark is a position on the owner's deque: only the owner pops there.
  if (!marked_ || local_mark_ == pool_core::no_local_mark || owner_ != &thread_tag) return false;
  bool ran = false;
  while (task_node* task = core_.pop_local_above(local_mark_)) {
    if (!shelf) shelf.emplace();
    task->complete(core_, true);
    ran = true;
  }
  return ran;
}

bool group_state::encloses(const group_state* group) const noexcept {
  // The chain is alive: a group nested in a child ends before that child.
  for (; group != nullptr; group = group->parent_group_) {
    if (group == this) return true;
  }
  return false;
}

bool group_state::steal_back(std::optional<slot_shelf>& shelf) noexcept {
  if (!core_.running_in_this_thread()) return false;
  task_node* task = core_.steal_for_waiter();
  if (task == nullptr) return false;
  // Taken, so ours to look at: the node cannot go meanwhile.
  if (task->completes_with(&complete_child)) {
    auto* const child = static_cast<group_child*>(task);
    if (encloses(child->group)) {
      if (!shelf) shelf.emplace();
      task->complete(core_, true);
      return true;
    }
    // Another group's child: its own waiter must still find it, and only
    // looks at its deque and its list (see hand_back).
    child->group->hand_back(child);
    return false;
  }
  // Not a group's work: another worker will run it.
  core_.requeue(task);
  return false;
}

void group_state::hand_back(group_child* child) noexcept {
  // From here on a shared child, as one queued from outside the workers:
  // on the list its waiter drains, and on the pool's queue, whichever side
  // claims it first runs it. On the pool's queue alone, it would wait for a
  // free worker, and with every worker waiting in a group, each for a child
  // that another set aside there, none would come.
  //
  // Once the child is on the list its waiter may run it, return and destroy
  // the group: an extra count held meanwhile keeps wait() from returning
  // until this function is done with the group (finish_one lets it go, its
  // last touch the futex word's address).
  add_pending(1);
  const bool counted = child->pool_counted;
  child->pool_counted = true;  // by queue_listed if it was not
  child->shared = true;
  push_on_list(child);
  queue_listed(child, counted);
  finish_one();  // the extra count
}

std::pair<std::exception_ptr, bool> group_state::wait_for_children() {
  CTXPOOL_ASSERT(running_child_of != this,
                 "task_group::wait called inside one of the group's own children: it would wait "
                 "for itself (wait in the code that made the group)");
  // Built before the first child runs here, so that it sees this thread as a
  // worker would; the waiter's own values come back when it ends.
  std::optional<slot_shelf> shelf;
  if (has_children()) core_.prepare_to_help();
  // Only the owner's own waiter ends the children it counted in its plain
  // count (see execute); another thread waits for them to end elsewhere.
  const bool owner_waits = owner_ == &thread_tag;
  const bool outer_wait = owner_waits && !owner_waiting_;
  if (outer_wait) owner_waiting_ = true;
  // A thread outside the pool that waits inside a child it runs for an
  // enclosing group leaves its children to the workers for a while, and
  // runs only those still unclaimed after that. Its children go through the
  // shared queue and its list, not a deque of its own: run here, the child's
  // own groups would send every node of its subtree that way, at several
  // times the cost of a worker's deque, while the workers' deques stay empty.
  const bool help_at_once = children_run_outside == 0;
  for (;;) {
    // Newest first: what this thread queued last, then the list. What only
    // this waiter can run, at once, whatever help_at_once says.
    if (run_local(shelf)) continue;
    if (waiter_list_ != nullptr && drain(std::exchange(waiter_list_, nullptr), shelf)) continue;
    if (help_at_once && listed() && drain_list(shelf)) {
      continue;
    }
    std::uint32_t seen = pending_.load(std::memory_order_acquire);
    if (all_ended(seen)) break;
    // Every remaining child runs on another thread (or is about to be queued
    // by one): spin a little, then sleep until one finishes or is queued.
    // On a worker, the children taken by other workers queue their own on
    // those workers' deques: take the oldest back, as a work-stealing pool's
    // waiter does, rather than leave this worker idle.
    // A child to run here has been queued, or the last one ended.
    const auto news = [&] {
      return (help_at_once && list_.load(std::memory_order_relaxed) != nullptr) ||
             all_ended(pending_.load(std::memory_order_relaxed));
    };
    bool changed = false;
    for (int i = 0; i < waiter_spins && !changed; ++i) {
      if (i % steal_interval == 0 && steal_back(shelf)) {
        changed = true;
        break;
      }
      spin_pause();
      changed = news();
    }
    // Then give the core away a while before sleeping: the children's
    // threads may be waiting for it (a loaded machine, more threads than
    // cores), and a futex round trip per wait would cost more.
    for (int i = 0; i < waiter_yields && !changed; ++i) {
      std::this_thread::yield();
      changed = steal_back(shelf) || news();
    }
    if (changed) continue;
    // Still unclaimed: the workers are busy (or blocked), so run them here.
    if (listed() && drain_list(shelf)) continue;
    seen = pending_.load(std::memory_order_acquire);
    if (all_ended(seen)) continue;
    if ((seen & asleep) == 0 &&
        !pending_.compare_exchange_strong(seen, seen | asleep, std::memory_order_seq_cst)) {
      continue;
    }
    if (list_.load(std::memory_order_seq_cst) != nullptr) {
      pending_.fetch_and(~asleep, std::memory_order_relaxed);
      continue;
    }
    pending_.wait(seen | asleep, std::memory_order_acquire);
    pending_.fetch_and(~asleep, std::memory_order_relaxed);
  }
  // Children run elsewhere may still be on the list: let go of them (they
  // are claimed, so nothing runs here).
  if (listed()) drain_list(shelf);
  shelf.reset();
  marked_ = false;
  if (outer_wait) owner_waiting_ = false;
  owner_pending_ = 0;
  pending_.store(0, std::memory_order_relaxed);
  std::exception_ptr error;
  // The group's own cancel, or an enclosing one (a request's deadline, an
  // outer group's cancel) that stopped it from starting children.
  const bool cancelled = cancelled_so_far();
  if (cancelled || has_error_.load(std::memory_order_acquire) ||
      cancelling_.load(std::memory_order_relaxed)) {
    std::lock_guard lock(mutex_);
    error = std::exchange(first_error_, nullptr);
    has_error_.store(false, std::memory_order_relaxed);
    cancelling_.store(false, std::memory_order_relaxed);
    // The group may be used again: a fresh cancellation (made when needed),
    // still a child of the one it was made under.
    if (cancelled) {
      cancel_.reset();
      made_.store(false, std::memory_order_relaxed);
    }
  }
  return {std::move(error), cancelled};
}

pool_core& core_of(thread_pool& pool) noexcept { return *pool.core_; }

namespace {

constexpr std::uint64_t low_bits = 0xffff'ffff;

constexpr std::uint64_t bounds(std::uint64_t begin, std::uint64_t end) noexcept {
  return begin << 32 | end;
}

}  // namespace

std::size_t loop_runners(thread_pool& pool) noexcept {
  const pool_core& core = core_of(pool);
  const std::size_t workers = core.thread_count();
  const std::size_t participants = workers + (core.running_in_this_thread() ? 0 : 1);
  return std::min(participants, std::max<std::size_t>(workers, 2));
}

loop_partition::loop_partition(std::size_t count, std::size_t runners, std::size_t step)
    : parts_(std::make_unique<part[]>(runners)),
      runners_(runners),
      // No larger than a part can be: begin + step stays within 64 bits.
      step_(std::min(step, max_count)) {
  CTXPOOL_ASSERT(count <= max_count && runners >= 1 && runners <= count && step >= 1,
                 "loop_partition: a count, runners or step parallel_for does not make");
  // Equal parts, the first ones one index longer where count does not divide.
  std::uint64_t begin = 0;
  for (std::size_t i = 0; i < runners; ++i) {
    const std::uint64_t length = count / runners + (i < count % runners ? 1 : 0);
    parts_[i].bounds.store(bounds(begin, begin + length), std::memory_order_relaxed);
    begin += length;
  }
}

bool loop_partition::next(std::size_t runner, std::size_t& lo, std::size_t& hi) noexcept {
  // The front of our own part. Others take from its back, on the same word,
  // so each index goes to exactly one runner; the indices' own effects are
  // ordered by the group's completion, not by these (relaxed) updates.
  std::atomic<std::uint64_t>& mine = parts_[runner].bounds;
  std::uint64_t seen = mine.load(std::memory_order_relaxed);
  while ((seen >> 32) < (seen & low_bits)) {
    const std::uint64_t begin = seen >> 32;
    const std::uint64_t end = seen & low_bits;
    const std::uint64_t taken = std::min<std::uint64_t>(end, begin + step_);
    if (mine.compare_exchange_weak(seen, bounds(taken, end), std::memory_order_relaxed)) {
      lo = begin;
      hi = taken;
      return true;
    }
  }
  // Ours is done: the back half of the largest part left becomes ours.
  for (;;) {
    std::size_t victim = runners_;
    std::uint64_t victim_bounds = 0;
    std::uint64_t most = 0;
    for (std::size_t i = 0; i < runners_; ++i) {
      const std::uint64_t other = parts_[i].bounds.load(std::memory_order_relaxed);
      const std::uint64_t begin = other >> 32;
      const std::uint64_t end = other & low_bits;
      if (i != runner && begin < end && end - begin > most) {
        most = end - begin;
        victim = i;
        victim_bounds = other;
      }
    }
    if (victim == runners_) return false;
    const std::uint64_t begin = victim_bounds >> 32;
    const std::uint64_t end = victim_bounds & low_bits;
    const std::uint64_t middle = begin + (end - begin) / 2;  // < end: at least one index
    if (!parts_[victim].bounds.compare_exchange_strong(victim_bounds, bounds(begin, middle),
                                                       std::memory_order_relaxed)) {
      continue;
    }
    // Our part is empty, and nobody takes from an empty part, so a plain
    // store cannot lose a thief's update.
    const std::uint64_t taken = std::min<std::uint64_t>(end, middle + step_);
    mine.store(bounds(taken, end), std::memory_order_relaxed);
    lo = middle;
    hi = taken;
    return true;
  }
}

}  // namespace detail

task_group::task_group(thread_pool& pool) : state_(detail::core_of(pool)) {}

task_group::~task_group() {
  // A waited group (the usual end) has nothing left: no second wait.
  if (state_.settled()) return;
  if (state_.has_children()) state_.cancel();
  // Also when every child has finished: one may have thrown.
  auto [error, cancelled] = state_.wait_for_children();
  (void)cancelled;
  if (error != nullptr) {
    state_.core().report_exception(error, task_info{0, {}, "task_group destroyed unwaited"});
  }
}

task_group_status task_group::wait() {
  auto [error, cancelled] = state_.wait_for_children();
  if (error != nullptr) std::rethrow_exception(error);
  return cancelled ? task_group_status::cancelled : task_group_status::complete;
}

}  // namespace ctxpool
