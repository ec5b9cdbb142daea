// task_group: the group's queue, its helper tasks and the helping waiter.
#include <ctxpool/task_group.hpp>

#include <thread>

namespace ctxpool {
namespace detail {
namespace {

/// The pool task that runs a group's queued children on a worker. Move-only;
/// whoever holds it last either ran it or gives its helper slot back.
class group_helper {
 public:
  explicit group_helper(group_state* group) noexcept : group_(group) {}
  group_helper(group_helper&& other) noexcept : group_(std::exchange(other.group_, nullptr)) {}
  group_helper& operator=(group_helper&&) = delete;
  ~group_helper() {
    if (group_ != nullptr) {  // destroyed unrun: the pool stopped
      group_->helper_abandoned();
      group_->release();
    }
  }
  void operator()() noexcept {
    group_state* group = std::exchange(group_, nullptr);
    group->help();
    group->release();
  }

 private:
  group_state* group_;
};

/// Spins before the waiter sleeps: a child of a fork-join is often short,
/// and a futex round trip costs more than several of them.
constexpr int waiter_spins = 256;

inline void spin_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

/// The group whose child runs on this thread now (innermost), for nesting.
constinit thread_local group_state* running_child_of = nullptr;

}  // namespace

group_state::group_state(pool_core& core)
    : core_(core),
      max_helpers_(static_cast<int>(core.thread_count())),
      parent_cancellation_(current_cancellation()) {
  if (group_state* parent = running_child_of; parent != nullptr && &parent->core_ == &core_) {
    parent->add_ref();
    parent_ = parent;
    std::lock_guard lock(parent->mutex_);
    next_sibling_ = parent->first_nested_;
    if (next_sibling_ != nullptr) next_sibling_->prev_sibling_ = this;
    parent->first_nested_ = this;
    parent->update_nested_hint();
  }
}

void group_state::detach_from_parent() noexcept {
  group_state* parent = std::exchange(parent_, nullptr);
  if (parent == nullptr) return;
  {
    std::lock_guard lock(parent->mutex_);
    if (prev_sibling_ != nullptr) {
      prev_sibling_->next_sibling_ = next_sibling_;
    } else {
      parent->first_nested_ = next_sibling_;
    }
    if (next_sibling_ != nullptr) next_sibling_->prev_sibling_ = prev_sibling_;
    parent->update_nested_hint();
  }
  parent->release();
}

group_child* group_state::steal_from_nested(group_state*& owner) noexcept {
  std::lock_guard lock(mutex_);
  for (group_state* nested = first_nested_; nested != nullptr; nested = nested->next_sibling_) {
    // seq_cst: pairs with the pusher's signal_ancestors (see wait_for_children).
    if (nested->queued_.load(std::memory_order_seq_cst) != 0) {
      if (group_child* child = nested->pop_oldest()) {
        // The nested group stays alive while its child runs here: it cannot
        // unlink itself (our lock) before we hold a reference.
        nested->add_ref();
        owner = nested;
        return child;
      }
    }
    if (nested->has_nested_.load(std::memory_order_relaxed)) {
      if (group_child* child = nested->steal_from_nested(owner)) return child;
    }
  }
  return nullptr;
}

void group_state::signal_ancestors() noexcept {
  for (group_state* outer = parent_; outer != nullptr; outer = outer->parent_) {
    if (outer->waiter_asleep_.load(std::memory_order_seq_cst)) {
      outer->signal_.fetch_add(1, std::memory_order_seq_cst);
      outer->signal_.notify_all();
    }
  }
}

void group_state::release() noexcept {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

captured_context group_state::child_snapshot() {
  std::lock_guard lock(mutex_);
  const map_node* current = current_root();
  if (!cache_valid_ || current != cached_map_) {
    // Once per group and context map: the current context plus the group's
    // cancellation, as a snapshot that each child then shares.
    captured_context with_cancellation;
    {
      // A private box on the stack holding the current map: setting the
      // variable there changes only that box.
      fresh_context_scope scratch(captured_context::capture(), /*continuation=*/false);
      cancellation_scope scope(cancel_);
      with_cancellation = captured_context::capture();
    }
    drop_snapshot_cache();
    // The reference keeps the map alive, so an equal address is the same
    // map, never a new one reusing freed memory.
    map_add_ref(current);
    cached_map_ = current;
    cached_child_ = std::move(with_cancellation);
    cache_valid_ = true;
  }
  return cached_child_;
}

void group_state::drop_snapshot_cache() noexcept {
  if (!cache_valid_) return;
  map_release(cached_map_);
  cached_map_ = nullptr;
  cached_child_ = {};
  cache_valid_ = false;
}

group_state::~group_state() {
  std::lock_guard lock(mutex_);
  drop_snapshot_cache();
}

void group_state::push(group_child* child) {
  pending_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(mutex_);
    child->prev = newest_;
    child->next = nullptr;
    if (newest_ != nullptr) {
      newest_->next = child;
    } else {
      oldest_ = child;
    }
    newest_ = child;
    queued_.fetch_add(1, std::memory_order_seq_cst);
  }
  if (try_take_helper_slot()) post_helper();
  signal_waiter();
  signal_ancestors();
}

group_child* group_state::pop_newest() noexcept {
  if (queued_.load(std::memory_order_acquire) == 0) return nullptr;
  std::lock_guard lock(mutex_);
  group_child* child = newest_;
  if (child == nullptr) return nullptr;
  newest_ = child->prev;
  if (newest_ != nullptr) {
    newest_->next = nullptr;
  } else {
    oldest_ = nullptr;
  }
  queued_.fetch_sub(1, std::memory_order_seq_cst);
  return child;
}

group_child* group_state::pop_oldest() noexcept {
  if (queued_.load(std::memory_order_acquire) == 0) return nullptr;
  std::lock_guard lock(mutex_);
  group_child* child = oldest_;
  if (child == nullptr) return nullptr;
  oldest_ = child->next;
  if (oldest_ != nullptr) {
    oldest_->prev = nullptr;
  } else {
    newest_ = nullptr;
  }
  queued_.fetch_sub(1, std::memory_order_seq_cst);
  return child;
}

bool group_state::try_take_helper_slot() noexcept {
  int helpers = helpers_.load(std::memory_order_seq_cst);
  while (helpers < max_helpers_) {
    if (helpers_.compare_exchange_weak(helpers, helpers + 1, std::memory_order_seq_cst))
      return true;
  }
  return false;
}

void group_state::post_helper() noexcept {
  add_ref();
  try {
    // Not refused after join/stop (Asio's rule for execute): a helper that
    // never runs is destroyed with the pool and gives its slot back; the
    // waiter runs the children.
    core_.enqueue(group_helper(this), captured_context{}, /*continuation=*/false,
                  task_info{core_.next_task_id(), {}, "task_group helper"},
                  /*check_open=*/false);
  } catch (...) {
    // No memory for the helper's node: the helper, destroyed unrun, gave its
    // slot and reference back; the waiter runs the children.
  }
}

void group_state::helper_abandoned() noexcept { helpers_.fetch_sub(1, std::memory_order_seq_cst); }

void group_state::help() noexcept {
  for (;;) {
    while (group_child* child = pop_oldest()) execute(child);
    helpers_.fetch_sub(1, std::memory_order_seq_cst);
    // A child queued after the last pop but before the slot was given back
    // saw no free slot: take the slot again and run it.
    if (queued_.load(std::memory_order_seq_cst) == 0 || !try_take_helper_slot()) return;
  }
}

void group_state::execute(group_child* child) noexcept {
  group_state* const outer = std::exchange(running_child_of, this);
  // The group's cancellation also ends when an enclosing one does (a
  // request's deadline, an outer group's cancel): stop starting children.
  child->complete(*this, !(cancelling() || cancel_.cancelled()));
  running_child_of = outer;
  // Release: the child's effects happen before the waiter returns from wait().
  pending_.fetch_sub(1, std::memory_order_seq_cst);
  signal_waiter();
}

void group_state::signal_waiter() noexcept {
  // The caller changed pending_ or queued_ (seq_cst) just before. A waiter
  // that stored waiter_asleep_ after this load looks at them after that
  // store and sees the change; one that stored it before is woken here.
  if (waiter_asleep_.load(std::memory_order_seq_cst)) {
    signal_.fetch_add(1, std::memory_order_seq_cst);
    signal_.notify_all();
  }
}

void group_state::record_exception(std::exception_ptr error) noexcept {
  {
    std::lock_guard lock(mutex_);
    if (first_error_ == nullptr) first_error_ = std::move(error);
  }
  cancel();
}

void group_state::cancel() noexcept {
  cancelling_.store(true, std::memory_order_release);
  cancellation_source target;
  {
    std::lock_guard lock(mutex_);
    target = cancel_;
  }
  // Outside the lock: cancelling runs callbacks, which may start work here.
  target.cancel();
}

bool group_state::run_nested_child(std::optional<slot_shelf>& shelf) noexcept {
  if (!has_nested_.load(std::memory_order_relaxed)) return false;
  group_state* owner = nullptr;
  group_child* child = steal_from_nested(owner);
  if (child == nullptr) return false;
  if (!shelf) shelf.emplace();
  owner->execute(child);
  owner->release();
  return true;
}

std::pair<std::exception_ptr, bool> group_state::wait_for_children() {
  CTXPOOL_ASSERT(running_child_of != this,
                 "task_group::wait called inside one of the group's own children: it would wait "
                 "for itself (wait in the code that made the group)");
  // Built before the first child runs here, so that it sees this thread as a
  // worker would; the waiter's own values come back when it ends.
  std::optional<slot_shelf> shelf;
  for (;;) {
    if (group_child* child = pop_newest()) {
      if (!shelf) shelf.emplace();
      execute(child);
      continue;
    }
    if (pending_.load(std::memory_order_acquire) == 0) break;
    if (run_nested_child(shelf)) continue;
    // Every remaining child runs on another thread (or is about to be queued
    // by one): spin a little, then sleep until one finishes or is queued.
    bool changed = false;
    for (int i = 0; i < waiter_spins && !changed; ++i) {
      spin_pause();
      changed = queued_.load(std::memory_order_relaxed) != 0 ||
                pending_.load(std::memory_order_relaxed) == 0;
    }
    if (changed) continue;
    waiter_asleep_.store(true, std::memory_order_seq_cst);
    const std::uint32_t seen = signal_.load(std::memory_order_seq_cst);
    // A nested group queueing a child wakes this waiter too (signal_ancestors).
    if (queued_.load(std::memory_order_seq_cst) == 0 &&
        pending_.load(std::memory_order_seq_cst) != 0 && !run_nested_child(shelf)) {
      signal_.wait(seen, std::memory_order_seq_cst);
    }
    waiter_asleep_.store(false, std::memory_order_relaxed);
  }
  shelf.reset();
  std::exception_ptr error;
  const bool cancelled =
      cancelling_.exchange(false, std::memory_order_acq_rel) || cancel_.cancelled();
  {
    std::lock_guard lock(mutex_);
    error = std::exchange(first_error_, nullptr);
    // The group may be used again: a fresh cancellation, still a child of
    // the one it was made under, and snapshots that carry it.
    if (cancelled) cancel_ = cancellation_source(parent_cancellation_);
    drop_snapshot_cache();
  }
  return {std::move(error), cancelled};
}

pool_core& core_of(thread_pool& pool) noexcept { return *pool.core_; }

}  // namespace detail

task_group::task_group(thread_pool& pool)
    : state_(new detail::group_state(detail::core_of(pool))) {}

task_group::~task_group() {
  state_->detach_from_parent();
  if (state_->has_children()) state_->cancel();
  // Also when every child has finished: one may have thrown.
  auto [error, cancelled] = state_->wait_for_children();
  (void)cancelled;
  if (error != nullptr) {
    state_->core().report_exception(error, task_info{0, {}, "task_group destroyed unwaited"});
  }
  state_->release();
}

task_group_status task_group::wait() {
  auto [error, cancelled] = state_->wait_for_children();
  if (error != nullptr) std::rethrow_exception(error);
  return cancelled ? task_group_status::cancelled : task_group_status::complete;
}

}  // namespace ctxpool
