// The pool's lifecycle: starting and ending the workers, the phases
// (pool_phase) that wait/join/stop and the destructor's finish move through,
// and the counts stats() reports.
#include <ctxpool/detail/pool_core.hpp>
#include <ctxpool/thread_pool.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>

#include <boost/asio/detail/scheduler.hpp>

#include <ctxpool/diagnostics.hpp>

namespace ctxpool::detail {

std::size_t resolve_thread_count(std::size_t requested) {
  if (requested == 0) {
    const unsigned hardware = std::thread::hardware_concurrency();
    return hardware == 0 ? 1 : hardware;
  }
  if (requested > thread_pool::max_threads) {
    throw std::invalid_argument("ctxpool::thread_pool: " + std::to_string(requested) +
                                " threads requested; at most " +
                                std::to_string(thread_pool::max_threads) +
                                " are allowed (a negative count converted to size_t?)");
  }
  return requested;
}

namespace {

/// Adds a scheduler to `owner`'s services, as asio::thread_pool does, so that
/// timers and sockets made from the pool find it with use_service.
boost::asio::detail::scheduler& add_scheduler(boost::asio::execution_context& owner,
                                              std::size_t threads) {
  auto scheduler = std::make_unique<boost::asio::detail::scheduler>(owner, threads == 1 ? 1 : 0,
                                                                    /*own_thread=*/false);
  boost::asio::add_service<boost::asio::detail::scheduler>(owner, scheduler.get());
  return *scheduler.release();  // owned by the service registry from here on
}

std::vector<task_observer*> with_detector(std::vector<task_observer*> observers, bool diagnostics) {
  std::erase(observers, nullptr);
  if (diagnostics) {
    if (task_observer* observer = diagnostics::pool_observer()) {
      observers.insert(observers.begin(), observer);
    }
  }
  return observers;
}

}  // namespace

pool_core::pool_core(boost::asio::execution_context& owner, std::size_t threads,
                     std::string name_prefix, std::vector<task_observer*> observers,
                     pool_tuning tuning)
    : owner_(owner),
      thread_count_(resolve_thread_count(threads)),
      tuning_(tuning),
      diagnostics_(diagnostics::enabled()),
      observers_(with_detector(std::move(observers), diagnostics_)),
      observed_(!observers_.empty()),
      workers_(new worker_state[thread_count_]),
      work_(thread_count_),
      idle_(thread_count_),
      scheduler_(add_scheduler(owner, thread_count_)) {
  scheduler_.work_started();  // workers keep running it while they wait for tasks
  start_threads(name_prefix);
}

pool_core::~pool_core() {
  // thread_pool's destructor ends the threads first (and then destroys the
  // scheduler with the other services, so it is not touched again here);
  // what is left are Asio handlers executed after the close, destroyed unrun
  // as an io_context does.
  if (phase_.load(std::memory_order_relaxed) < pool_phase::ended) end_threads();
  destroy_queued_tasks();
}

void pool_core::start_threads(const std::string& name_prefix) {
  threads_.reserve(thread_count_);
  try {
    for (std::size_t i = 0; i < thread_count_; ++i) {
      std::string name = name_prefix + std::to_string(i);
      threads_.emplace_back([this, i, name = std::move(name)] { worker_main(i, name); });
    }
  } catch (...) {
    end_threads();
    throw;
  }
}

void pool_core::end_threads() noexcept {
  CTXPOOL_ASSERT(phase_.load(std::memory_order_relaxed) < pool_phase::ended,
                 "the threads are ended once");
  advance_phase(pool_phase::stopping);
  CTXPOOL_PROTOCOL_STEP();
  idle_.wake_all();  // a worker parking after this sees the phase in its last look
  CTXPOOL_PROTOCOL_STEP();
  scheduler_.work_finished();  // the one work item the constructor counted
  scheduler_.stop();           // wakes the worker sleeping in run_one
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
  {
    // Nothing can run any more: a wait() in progress or to come returns.
    std::lock_guard lock(idle_mutex_);
    advance_phase(pool_phase::ended);
  }
  idle_cv_.notify_all();
}

void pool_core::destroy_queued_tasks() noexcept {
  // Only once the workers are gone, so any thread may take from the queues.
  for (;;) {
    task_node* node = nullptr;
    for (std::size_t i = 0; node == nullptr && i < thread_count_; ++i) {
      node = workers_[i].shared.inbox.take();
    }
    if (node == nullptr) node = injection_.try_pop();
    for (std::size_t i = 0; node == nullptr && i < thread_count_; ++i) {
      node = workers_[i].shared.deque.steal();
    }
    if (node == nullptr) break;
    node->complete(*this, false);
  }
  task_node* node = abandoned_.exchange(nullptr, std::memory_order_acquire);
  while (node != nullptr) {
    task_node* next = node->next.load(std::memory_order_relaxed);
    work_.add(my_lane(), work_kind::task);  // complete() uncounts the task it ends
    node->complete(*this, false);
    node = next;
  }
}

void pool_core::keep_abandoned(task_node* node) noexcept {
  task_node* head = abandoned_.load(std::memory_order_relaxed);
  do {
    node->next.store(head, std::memory_order_relaxed);
  } while (!abandoned_.compare_exchange_weak(head, node, std::memory_order_release,
                                             std::memory_order_relaxed));
}

std::uint64_t pool_core::next_task_id() const noexcept {
  return diagnostics_ ? diagnostics::next_task_id() : 0;
}

void pool_core::notify_idle() noexcept {
  std::lock_guard lock(idle_mutex_);
  idle_cv_.notify_all();
}

void pool_core::wait_idle(bool tasks_only) {
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  {
    std::unique_lock lock(idle_mutex_);
    idle_cv_.wait(lock, [this, tasks_only] {
      return work_.idle(tasks_only) || phase_.load(std::memory_order_relaxed) >= pool_phase::ended;
    });
  }
  waiters_.fetch_sub(1, std::memory_order_seq_cst);
}

void pool_core::wait() {
  if (running_in_this_thread()) throw_called_from_worker("wait()");
  wait_idle(/*tasks_only=*/false);
}

void pool_core::join() {
  if (running_in_this_thread()) throw_called_from_worker("join()");
  std::lock_guard lock(lifecycle_mutex_);
  if (phase_.load(std::memory_order_relaxed) >= pool_phase::ended) return;
  // Running tasks may still submit while we wait; only then close, and wait
  // again for any submit that raced with the close (see add_task).
  wait_idle(/*tasks_only=*/false);
  advance_phase(pool_phase::closed);
  wait_idle(/*tasks_only=*/false);
  end_threads();
}

void pool_core::finish() {
  std::lock_guard lock(lifecycle_mutex_);
  if (phase_.load(std::memory_order_relaxed) >= pool_phase::ended) return;
  // As join(), but waiting for tasks only: tracked work (a timer, an accept)
  // may never end, and the owner destroys it once the threads are gone.
  wait_idle(/*tasks_only=*/true);
  advance_phase(pool_phase::closed);
  wait_idle(/*tasks_only=*/true);
  end_threads();
}

void pool_core::stop(void (*shutdown_services)(boost::asio::execution_context&)) {
  if (running_in_this_thread()) throw_called_from_worker("stop()");
  std::lock_guard lock(lifecycle_mutex_);
  // Stopping and closed in one store: a running task that sees the pool
  // closed must not be followed by another task on its worker.
  advance_phase(pool_phase::stopping);
  idle_.wake_all();
  scheduler_.stop();
  if (phase_.load(std::memory_order_relaxed) < pool_phase::ended) {
    end_threads();  // each worker returns after its current task
  }
  // Destroys queued tasks (their promises report broken_promise) and pending
  // timer waits on this thread, before stop() returns. A submit that passed
  // the closed check just before the close is counted but may not be queued
  // yet: it will be in a moment, so wait for the count of tasks to reach
  // zero, destroying each as it arrives. Nothing else can hold a task count
  // now that the workers are gone: what Asio's execute hands over from now on
  // is not counted (see enqueue_node), so a thread that keeps posting cannot
  // keep this loop going.
  destroy_queued_tasks();
  while (!work_.idle(/*tasks_only=*/true)) {
    std::this_thread::yield();
    destroy_queued_tasks();
  }
  if (phase_.load(std::memory_order_relaxed) < pool_phase::services_shut_down) {
    shutdown_services(owner_);
    advance_phase(pool_phase::services_shut_down);
  }
}

pool_core::counts pool_core::snapshot_counts() const noexcept {
  std::uint64_t started = foreign_counters_.started.load(std::memory_order_relaxed);
  std::uint64_t completed = foreign_counters_.completed.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < thread_count_; ++i) {
    completed += workers_[i].shared.counters.completed.load(std::memory_order_relaxed);
    started += workers_[i].shared.counters.started.load(std::memory_order_relaxed);
  }
  const std::uint64_t running = started > completed ? started - completed : 0;
  const auto tasks = static_cast<std::int64_t>(work_.outstanding().tasks);
  const std::int64_t queued = tasks - static_cast<std::int64_t>(running);
  return {static_cast<std::size_t>(std::max<std::int64_t>(queued, 0)),
          static_cast<std::size_t>(running), completed};
}

}  // namespace ctxpool::detail
