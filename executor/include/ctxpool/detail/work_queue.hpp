// The pool's task queues: per worker, a deque for the tasks it submits itself
// and an inbox for a batch it took from outside; one injection queue for
// everything else.
//
// Ordering: tasks submitted from outside the pool, and Asio handlers, go
// through the injection queue and start in the order they were queued, as far
// as several workers taking them at once allow: a worker moves a batch of
// them to its inbox, which it and idle workers both take oldest first. A task
// submitted from a worker goes to that worker's own deque, where the worker
// takes the newest first (recursive work stays in cache and the deque stays
// short) and idle workers steal the oldest. Strands remain the way to
// serialise.
//
// @par Thread safety
// local_deque: push and pop by its owner only, steal by any thread.
// batch_inbox: fill by its owner only, take by any thread.
// injection_queue: push and try_pop by any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include <ctxpool/detail/task_node.hpp>

namespace ctxpool::detail {

/// A worker's own tasks: a fixed-size work-stealing deque (Chase and Lev,
/// "Dynamic circular work-stealing deque", SPAA 2005, with the C11 orderings
/// of Lê et al., PPoPP 2013). The orderings that pair the owner's `bottom_`
/// with the thieves' `top_` are seq_cst operations rather than fences, which
/// ThreadSanitizer does not model. A full deque refuses the push and the
/// caller queues the task on the injection queue instead, so the deque never
/// reallocates.
class local_deque {
 public:
  static constexpr std::int64_t capacity = 256;

  /// Owner only. False when the deque is full.
  bool push(task_node* node) noexcept {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    const std::int64_t t = top_.load(std::memory_order_acquire);
    if (b - t >= capacity) return false;
    cells_[static_cast<std::size_t>(b & mask)].store(node, std::memory_order_relaxed);
    // seq_cst: the store that publishes the task also orders the caller's
    // following look for idle workers (see pool_core::wake_for_new_work).
    bottom_.store(b + 1, std::memory_order_seq_cst);
    return true;
  }

  /// Owner only: the newest task, or null.
  task_node* pop() noexcept {
    // An empty deque costs two loads, not the claim's full barrier: only the
    // owner moves bottom_, and a stale top_ can only make it look fuller.
    if (bottom_.load(std::memory_order_relaxed) <= top_.load(std::memory_order_relaxed)) {
      return nullptr;
    }
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    bottom_.store(b, std::memory_order_seq_cst);  // claim before looking at top_
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    if (t > b) {  // empty
      bottom_.store(b + 1, std::memory_order_relaxed);
      return nullptr;
    }
    task_node* node = cells_[static_cast<std::size_t>(b & mask)].load(std::memory_order_relaxed);
    if (t == b) {
      // The last task: a thief may be taking it too; the CAS on top_ decides.
      if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
        node = nullptr;
      }
      bottom_.store(b + 1, std::memory_order_relaxed);
    }
    return node;
  }

  /// Owner only: whether a push would be refused.
  [[nodiscard]] bool full() const noexcept {
    return bottom_.load(std::memory_order_relaxed) - top_.load(std::memory_order_acquire) >=
           capacity;
  }

  /// Owner only: a position that the next push goes above (its bottom).
  [[nodiscard]] std::int64_t mark() const noexcept {
    return bottom_.load(std::memory_order_relaxed);
  }

  /// Owner only: the newest task if it was pushed after `mark()` returned
  /// `mark` (and is still there), else null. Tasks below the mark are not
  /// looked at.
  task_node* pop_above(std::int64_t mark) noexcept {
    if (bottom_.load(std::memory_order_relaxed) <= mark) return nullptr;
    return pop();
  }

  /// Any thread: the oldest task, or null when empty or another thread took
  /// it first.
  task_node* steal() noexcept {
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    const std::int64_t b = bottom_.load(std::memory_order_seq_cst);
    if (t >= b) return nullptr;
    task_node* node = cells_[static_cast<std::size_t>(t & mask)].load(std::memory_order_relaxed);
    if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      return nullptr;
    }
    return node;
  }

  /// A racy look from any thread: whether there may be something to steal.
  [[nodiscard]] bool maybe_nonempty() const noexcept {
    return bottom_.load(std::memory_order_seq_cst) > top_.load(std::memory_order_seq_cst);
  }

 private:
  static constexpr std::int64_t mask = capacity - 1;
  static_assert((capacity & mask) == 0, "capacity is a power of two");

  alignas(64) std::atomic<std::int64_t> top_{0};     // thieves take here
  alignas(64) std::atomic<std::int64_t> bottom_{0};  // the owner pushes and pops here
  std::atomic<task_node*> cells_[capacity] = {};
};

/// Tasks a worker took from the injection queue in one go, kept in their
/// queue order: a bounded ring that its owner fills only when it is empty
/// and that every worker takes from the front, so a batch starts in
/// submission order whoever runs it, and a task behind one that blocks its
/// worker is taken by another. Taking a batch at a time is what keeps two
/// workers draining one stream of outside tasks from meeting on the
/// injection queue's lock for every task.
class batch_inbox {
 public:
  /// A power of two, for the ring's mask. 16: two workers draining one
  /// stream meet on the injection queue's lock once per 17 tasks rather than
  /// per task, and a task waits behind at most 16 that one busy worker holds.
  static constexpr std::uint32_t capacity = 16;

  /// Owner only, into an empty inbox (the owner's take found nothing, and
  /// no one else adds): stores up to `capacity` tasks, oldest first, and
  /// publishes them at once.
  void fill(task_node* const* tasks, std::uint32_t count) noexcept {
    const std::uint32_t end = tail_.load(std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < count; ++i) {
      cells_[(end + i) & mask].store(tasks[i], std::memory_order_relaxed);
    }
    // seq_cst: as local_deque::push, this store also orders the owner's
    // following look for idle workers.
    tail_.store(end + count, std::memory_order_seq_cst);
  }

  /// Any thread: the oldest task, or null when empty.
  task_node* take() noexcept {
    std::uint32_t front = front_.load(std::memory_order_acquire);
    for (;;) {
      if (front == tail_.load(std::memory_order_acquire)) return nullptr;
      // The cell may be refilled as soon as another taker claims it, so the
      // value read only counts if the claim below succeeds.
      task_node* node = cells_[front & mask].load(std::memory_order_relaxed);
      if (front_.compare_exchange_weak(front, front + 1, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        return node;
      }
    }
  }

  /// A racy look from any thread: whether there may be something to take.
  [[nodiscard]] bool maybe_nonempty() const noexcept {
    return tail_.load(std::memory_order_seq_cst) != front_.load(std::memory_order_seq_cst);
  }

 private:
  static constexpr std::uint32_t mask = capacity - 1;
  static_assert((capacity & mask) == 0, "capacity is a power of two");

  alignas(64) std::atomic<std::uint32_t> front_{0};  // every taker claims here
  alignas(64) std::atomic<std::uint32_t> tail_{0};   // the owner publishes here
  std::atomic<task_node*> cells_[capacity] = {};
};

/// How many tasks a worker takes from the injection queue at once: the one
/// it runs now and a full inbox (17).
inline constexpr std::size_t injection_batch = batch_inbox::capacity + 1;

/// Tasks from outside the pool, Asio handlers, and a full deque's overflow:
/// an intrusive multi-producer queue (Vyukov's, with a stub node) whose push
/// is one atomic exchange, so submitters never wait for each other or for a
/// worker; workers take a batch at a time (injection_batch) under a mutex of
/// their own, which they only try to lock.
class injection_queue {
 public:
  injection_queue() noexcept = default;
  injection_queue(const injection_queue&) = delete;
  injection_queue& operator=(const injection_queue&) = delete;

  /// Any thread, lock-free.
  void push(task_node* node) noexcept {
    node->next.store(nullptr, std::memory_order_relaxed);
    // seq_cst: a worker going to sleep looks at the tail last (see
    // maybe_nonempty), so the exchange is what pairs with it, and it orders
    // the caller's following look for idle workers.
    task_node* previous = tail_.exchange(node, std::memory_order_seq_cst);
    // Until this store a consumer sees the queue end at `previous` and treats
    // the task as not yet there, but maybe_nonempty already says there is one.
    previous->next.store(node, std::memory_order_release);
  }

  /// Any thread: whether a task may be queued (or is being pushed). The tail
  /// alone does not say: a pop that puts the stub back while a push is
  /// linking leaves the stub last with tasks before it, and then the head is
  /// not the stub.
  [[nodiscard]] bool maybe_nonempty() const noexcept {
    return tail_.load(std::memory_order_seq_cst) != &stub_ ||
           head_.load(std::memory_order_seq_cst) != &stub_;
  }

  /// Any thread: whether a task is linked in, read from the consumers' end
  /// only (see try_pop). Unlike maybe_nonempty it misses a push that is
  /// still linking, so it must not decide whether a worker may sleep.
  [[nodiscard]] bool has_linked_task() const noexcept {
    const task_node* first = head_.load(std::memory_order_acquire);
    return first != &stub_ || stub_.next.load(std::memory_order_acquire) != nullptr;
  }

  /// Any thread: up to `max` of the oldest tasks, oldest first, into `out`;
  /// how many. None when there is none yet (a push that has exchanged the
  /// tail but not linked its node is not seen; its pusher looks for an idle
  /// worker after linking), or when another thread is taking some right
  /// now, and then `contended` is set. A worker that finds the queue busy
  /// tries again after a pause rather than sleep in the kernel for a lock
  /// held for a few instructions.
  std::size_t try_pop(task_node** out, std::size_t max, bool& contended) noexcept {
    contended = false;
    // Only the consumers' end is read here: polling the tail would pull the
    // line that every push writes away from the submitters.
    if (!has_linked_task()) return 0;
    std::unique_lock lock(pop_mutex_, std::try_to_lock);
    if (!lock.owns_lock()) {
      contended = true;
      return 0;
    }
    std::size_t taken = 0;
    while (taken < max) {
      task_node* node = pop_locked();
      if (node == nullptr) break;
      out[taken++] = node;
    }
    return taken;
  }

  /// The oldest task, or null, for a caller that does not care why there is
  /// none (see the batch try_pop).
  task_node* try_pop() noexcept {
    bool contended = false;
    task_node* node = nullptr;
    return try_pop(&node, 1, contended) != 0 ? node : nullptr;
  }

 private:
  /// The oldest linked task, or null; under pop_mutex_.
  task_node* pop_locked() noexcept {
    task_node* head = head_.load(std::memory_order_relaxed);
    task_node* next = head->next.load(std::memory_order_acquire);
    if (head == &stub_) {
      if (next == nullptr) return nullptr;
      head_.store(next, std::memory_order_release);
      head = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      head_.store(next, std::memory_order_release);
      return head;
    }
    if (tail_.load(std::memory_order_acquire) != head) return nullptr;  // a push is linking
    // `head` is the last task: put the stub behind it so that it can go.
    push(&stub_);
    next = head->next.load(std::memory_order_acquire);
    if (next == nullptr) return nullptr;  // a push got in before the stub and is linking
    head_.store(next, std::memory_order_release);
    return head;
  }

  struct stub_node : task_node {
    stub_node() noexcept : task_node(nullptr) {}
  };

  alignas(64) std::atomic<task_node*> tail_{&stub_};  // producers
  alignas(64) std::mutex pop_mutex_;                  // consumers
  std::atomic<task_node*> head_{&stub_};  // written under pop_mutex_; read by maybe_nonempty
  stub_node stub_;
};

}  // namespace ctxpool::detail
