// The worker loop: where a worker finds its next task, how it spins, and how
// it parks; the spare map references it holds between tasks.
#include <ctxpool/detail/pool_core.hpp>

#include <boost/asio/detail/scheduler.hpp>

#include <pthread.h>

#include <iterator>
#include <new>
#include <string>
#include <thread>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace ctxpool::detail {

namespace {

/// How many times an idle worker looks for work before it sleeps, and how
/// long it pauses between looks (a few microseconds in all). Longer spinning
/// takes the core from the thread that feeds the pool when there are no more
/// cores than workers; shorter makes a submit-and-wait pay a wake-up.
constexpr unsigned spin_rounds = 64;
constexpr unsigned pauses_per_round = 8;

/// Every this many tasks a worker looks at outside tasks (the inboxes, then
/// the injection queue) and at the oldest task of its own deque before its
/// newest, so that neither outside submissions nor a worker's early tasks
/// wait while it works through a stream of newer ones. 61, the interval of
/// Go's scheduler for its global queue: often enough that an outside task
/// waits behind a few dozen local ones at most, rarely enough to cost
/// nothing measurable; a prime, so that the check does not fall into step
/// with io_poll_interval or with a periodic pattern of tasks.
constexpr std::uint32_t fairness_interval = 61;

/// How many more times a worker tries the injection queue when another
/// worker is taking a task from it, pausing a little longer each time. The
/// other holds the lock for a few instructions; giving up at once sends the
/// worker into its idle search (a yield, a spin, maybe a sleep) with tasks
/// queued, while more retries take the core from producers when threads
/// outnumber cores (docs/performance-history.md has the measurements).
constexpr unsigned injection_retries = 3;

/// How often a busy worker lets ready timer and I/O handlers run.
constexpr std::uint32_t io_poll_interval = 64;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace

std::size_t foreign_lane_of_this_thread() noexcept {
  static std::atomic<std::size_t> next_lane{0};
  constexpr std::size_t unassigned = ~std::size_t{0};
  static constinit thread_local std::size_t lane = unassigned;
  if (CTXPOOL_UNLIKELY(lane == unassigned)) {
    lane = next_lane.fetch_add(1, std::memory_order_relaxed) % work_count::foreign_lanes;
  }
  return lane;
}

void pool_core::worker_main(std::size_t index, const std::string& name) {
  // Linux allows 15 bytes plus the terminator; a longer name fails with ERANGE.
  const std::string short_name = name.substr(0, 15);
  pthread_setname_np(pthread_self(), short_name.c_str());
  current_worker = {this, index};
  worker_state& me = workers_[index];
  {
    worker_capture_reserve reserve;
    me.own.reserve = &reserve;
    for (task_observer* observer : observers_) observer->on_thread_start(index);
    run_worker_loop(me, index);
    give_back_references(me);
    me.own.reserve = nullptr;
  }
  blocks_.flush(me.own.freed);
  for (task_observer* observer : observers_) observer->on_thread_stop(index);
  current_worker = {nullptr, 0};
}

void pool_core::run_worker_loop(worker_state& me, std::size_t index) {
  // Woken from the futex (counted as spinning), and whether to take the free
  // I/O role rather than spin in search of tasks.
  bool woken = false;
  bool woken_for_io_role = false;
  // Back from a sleep it did not sleep: the last look found work. While the
  // worker searched, submitters saw it spinning and woke no one, so it now
  // hands on what is left once it has its task, as a searcher that finds
  // work does (search's `found`); else a burst queued meanwhile waits for it.
  bool hand_on = false;
  for (;;) {
    try {
      if (stopping(std::memory_order_acquire)) {
        if (woken) idle_.stop_spinning();
        break;
      }
      task_node* task = nullptr;
      if (!woken) {
        task = find_task(me, index);
        if (std::exchange(hand_on, false) && task != nullptr && work_visible()) {
          wake_for_new_work();
        }
        if (task == nullptr && poll_scheduler()) continue;
        // Out of work after the tasks it ended: if they were the last, wake wait().
        if (task == nullptr) check_idle_if_due(me);
      }
      if (task == nullptr) {
        task = search(me, index, std::exchange(woken, false),
                      /*pause=*/!std::exchange(woken_for_io_role, false));
      }
      if (task != nullptr) {
        task->complete(*this, true);
        if (me.own.taken % io_poll_interval == 0) poll_scheduler();
        continue;
      }
      // Nothing anywhere: sleep where timers and I/O can wake us if that
      // role is free, else on the futex; submitters get our freed blocks.
      blocks_.flush(me.own.freed);
      CTXPOOL_PROTOCOL_STEP();
      if (!io_.taken.exchange(true, std::memory_order_acq_rel)) {
        sleep_in_scheduler();
      } else {
        woken = sleep_parked(index);
        woken_for_io_role = woken && idle_.woken_for_io_role(index);
        hand_on = !woken;
      }
    } catch (...) {
      // Only a raw handler posted straight to the scheduler can throw here;
      // ctxpool's own tasks catch everything.
      report_exception(std::current_exception(), task_info{});
    }
  }
}

void pool_core::count_held_references() noexcept {
  if (current_worker.pool == this) {
    worker_capture_reserve* reserve = workers_[current_worker.index].own.reserve;
    CTXPOOL_DEBUG_ASSERT(reserve != nullptr, "a worker holds spares outside its loop");
    // Before the task's own unit goes: wait() cannot see zero between.
    if (reserve->count_spares()) add_tracked();
  } else if (tls.reserve.held()) {
    // A worker of another pool ran our task (a destructor or a dispatch
    // between its own tasks): it cannot count its spares here.
    tls.reserve.give_back();
  }
}

void pool_core::give_back_references(worker_state& me) noexcept {
  if (me.own.reserve->give_back()) remove_tracked();
}

task_node* pool_core::take_injected(worker_state& me) noexcept {
  // The first task to run now, the rest of the batch into our inbox, which
  // is empty: take_outside comes here only when it found nothing there, and
  // only we fill it.
  task_node* batch[injection_batch];
  for (unsigned attempt = 0;; ++attempt) {
    bool contended = false;
    const std::size_t taken = injection_.try_pop(batch, std::size(batch), contended);
    if (taken != 0) {
      if (taken > 1) me.shared.inbox.fill(batch + 1, static_cast<std::uint32_t>(taken - 1));
      // More queued than this worker can run now: make sure another looks.
      // (A push still linking wakes a worker itself once linked.)
      CTXPOOL_PROTOCOL_STEP();
      if (taken > 1 || injection_.has_linked_task()) wake_for_new_work();
      return batch[0];
    }
    if (!contended || attempt == injection_retries) return nullptr;
    for (unsigned i = 0; i < attempt + 1; ++i) cpu_relax();
  }
}

task_node* pool_core::take_outside(worker_state& me) noexcept {
  if (task_node* task = me.shared.inbox.take()) return task;
  return take_injected(me);
}

task_node* pool_core::find_task(worker_state& me, std::size_t index) noexcept {
  ++me.own.taken;
  if (me.own.taken % fairness_interval == 0) {
    // Oldest first: another worker's inbox (it may be running a long task),
    // ours, the injection queue, then our own oldest.
    if (task_node* task = steal_task(index, /*inboxes_only=*/true)) return task;
    if (task_node* task = take_outside(me)) return task;
    if (task_node* task = me.shared.deque.steal()) return task;
  }
  CTXPOOL_PROTOCOL_STEP();
  if (task_node* task = me.shared.deque.pop()) return task;
  // A new batch before another worker's inbox: taking one task at a time
  // from another's inbox moves its line between the two cores per task
  // (docs/performance-history.md). So an outside task may start before up to
  // a batch of earlier ones per other worker.
  if (task_node* task = take_outside(me)) return task;
  return steal_task(index, /*inboxes_only=*/false);
}

task_node* pool_core::steal_task(std::size_t thief, bool inboxes_only) noexcept {
  for (std::size_t i = 1; i < thread_count_; ++i) {
    std::size_t victim = thief + i;
    if (victim >= thread_count_) victim -= thread_count_;
    // The inbox first: outside tasks, older than anything the victim queued.
    if (task_node* task = workers_[victim].shared.inbox.take()) return task;
    if (inboxes_only) continue;
    if (task_node* task = workers_[victim].shared.deque.steal()) return task;
  }
  return nullptr;
}

bool pool_core::work_visible() const noexcept {
  if (injection_.maybe_nonempty()) return true;
  for (std::size_t i = 0; i < thread_count_; ++i) {
    if (workers_[i].shared.deque.maybe_nonempty() || workers_[i].shared.inbox.maybe_nonempty())
      return true;
  }
  return false;
}

task_node* pool_core::search(worker_state& me, std::size_t index, bool counted,
                             bool pause) noexcept {
  if (!counted) idle_.start_spinning();
  // The last spinner to find work hands the search on if more is queued:
  // submitters wake nobody while someone spins.
  const auto found = [&](task_node* task) {
    if (idle_.stop_spinning() && work_visible()) wake_idle_worker();
    return task;
  };
  // First let a thread that the last task woke (a submitter waiting for its
  // future lands on the waker's core) run. Also while tasks are still queued:
  // skipping the yield then leaves a feeder or producer without a core
  // (docs/performance-history.md).
  if (pause) std::this_thread::yield();
  // Out of work: the values that only our spare references keep alive go
  // now, and wait() may return.
  give_back_references(me);
  // Then busy-wait, few at a time (see idle_workers::try_start_pausing). The
  // others sleep at once: looking again while yielding the core between
  // looks (as rayon does) makes a submit-and-wait round trip dearer where
  // each sched_yield is an expensive system call that keeps the woken
  // submitter waiting, and wins nothing on fan-outs
  // (docs/performance-history.md).
  // A worker woken to take the free I/O role (handed on by a waiter about to
  // run a handler) goes straight to it: ready handlers wait there, and its
  // last look before run_one finds any task published meanwhile.
  if (pause && idle_.try_start_pausing()) {
    task_node* task = nullptr;
    for (unsigned round = 0; round < spin_rounds && task == nullptr; ++round) {
      if (stopping(std::memory_order_relaxed)) break;
      task = find_task(me, index);
      if (task == nullptr) {
        for (unsigned i = 0; i < pauses_per_round; ++i) cpu_relax();
      }
    }
    idle_.stop_pausing();
    if (task != nullptr) return found(task);
  }
  idle_.stop_spinning();
  return nullptr;
}

void pool_core::wake_idle_worker() noexcept {
  if (idle_.wake_one()) return;
  CTXPOOL_PROTOCOL_STEP();  // no parked worker: between that look and the waiter's
  if (io_.sleepers.load(std::memory_order_seq_cst) != 0) wake_io_waiter();
}

bool pool_core::sleep_parked(std::size_t index) {
  idle_.prepare_park(index);  // a protocol step follows the announcement
  // The last look, after registering (see parking.hpp). A free I/O role
  // counts as work: it must not stay empty while we sleep.
  if (work_visible() || stopping(std::memory_order_seq_cst) ||
      !io_.taken.load(std::memory_order_seq_cst)) {
    // False: withdrawn, or woken by wake_all (the pool ends). True: a
    // waker chose us meanwhile and counted us; it wrote why under the
    // lock that cancel_park takes, so the word says which.
    return !idle_.cancel_park(index) && !idle_.woken_by_wake_all(index);
  }
  idle_.park(index);
  return !idle_.woken_by_wake_all(index);
}

void pool_core::free_task(void* block, std::size_t size) noexcept {
  if (current_worker.pool != this) {
    small_free(block, size);
    return;
  }
  blocks_.free_on_worker(workers_[current_worker.index].own.freed, block, size);
}

}  // namespace ctxpool::detail
