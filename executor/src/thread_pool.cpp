// thread_pool: worker threads, lifecycle, exception reporting and stats.
#include <ctxpool/executor.hpp>

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <typeinfo>

#include <ctxpool/detail/demangle.hpp>
#include <ctxpool/diagnostics.hpp>

#include <boost/asio/post.hpp>

namespace ctxpool {
namespace detail {

void throw_pool_closed(const char* operation) {
  throw pool_closed(std::string("ctxpool::thread_pool::") + operation +
                    ": the pool has been joined or stopped and accepts no new tasks; submit "
                    "before join()/stop(), or use a pool that is still running");
}

void throw_called_from_worker(const char* operation) {
  throw std::logic_error(std::string("ctxpool::thread_pool::") + operation +
                         " called from one of the pool's own threads: it would wait for the "
                         "calling task itself and deadlock; call it from outside the pool");
}

namespace {

/// The pool's threads: at least one, at most thread_pool::max_threads.
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

std::string exception_description(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return demangle(typeid(e)) + ": " + e.what();
  } catch (...) {
    return "an exception not derived from std::exception";
  }
}

/// The default exception handler: report and keep running.
void print_task_exception(const std::exception_ptr& error, const task_info& info) noexcept {
  try {
    const std::string what = exception_description(error);
    if (info.submit_site.line() != 0) {
      std::fprintf(stderr,
                   "ctxpool: task submitted at %s:%u (%s) threw %s; the pool keeps running "
                   "(install a handler with thread_pool::set_exception_handler)\n",
                   info.submit_site.file_name(), static_cast<unsigned>(info.submit_site.line()),
                   info.submit_site.function_name(), what.c_str());
    } else {
      std::fprintf(stderr,
                   "ctxpool: an Asio handler run on the pool threw %s; the pool keeps running "
                   "(install a handler with thread_pool::set_exception_handler)\n",
                   what.c_str());
    }
  } catch (...) {
    std::fputs("ctxpool: a task threw, and reporting it failed (out of memory?)\n", stderr);
  }
}

}  // namespace

namespace {
/// Adds a scheduler to `owner`'s services, as asio::thread_pool does, so that
/// timers and sockets made from the pool find it with use_service.
boost::asio::detail::scheduler& add_scheduler(boost::asio::execution_context& owner,
                                              std::size_t threads) {
  auto scheduler = std::make_unique<boost::asio::detail::scheduler>(
      owner, threads == 1 ? 1 : 0, /*own_thread=*/false);
  boost::asio::add_service<boost::asio::detail::scheduler>(owner, scheduler.get());
  return *scheduler.release();  // owned by the service registry from here on
}
/// The installed exception handler itself threw: say so, naming both
/// exceptions and the task, rather than passing it off as a task's own.
void print_handler_failure(const std::exception_ptr& handler_error,
                           const std::exception_ptr& task_error, const task_info& info) noexcept {
  try {
    const std::string thrown = exception_description(handler_error);
    const std::string original = exception_description(task_error);
    if (info.submit_site.line() != 0) {
      std::fprintf(stderr,
                   "ctxpool: the exception handler installed with "
                   "thread_pool::set_exception_handler threw %s while handling %s from the task "
                   "submitted at %s:%u (%s); the pool keeps running (an exception handler "
                   "should not throw)\n",
                   thrown.c_str(), original.c_str(), info.submit_site.file_name(),
                   static_cast<unsigned>(info.submit_site.line()),
                   info.submit_site.function_name());
    } else {
      std::fprintf(stderr,
                   "ctxpool: the exception handler installed with "
                   "thread_pool::set_exception_handler threw %s while handling %s from an Asio "
                   "handler run on the pool; the pool keeps running (an exception handler "
                   "should not throw)\n",
                   thrown.c_str(), original.c_str());
    }
  } catch (...) {
    std::fputs("ctxpool: the exception handler threw, and reporting it failed (out of memory?)\n",
               stderr);
  }
}

}  // namespace

pool_core::pool_core(boost::asio::execution_context& owner, std::size_t threads,
                     std::string name_prefix, std::vector<task_observer*> observers,
                     pool_tuning tuning)
    : owner_(owner),
      thread_count_(resolve_thread_count(threads)),
      tuning_(tuning),
      diagnostics_(diagnostics::enabled()),
      observers_(std::move(observers)),
      counters_(new worker_counters[thread_count_]),
      scheduler_(add_scheduler(owner, thread_count_)) {
  std::erase(observers_, nullptr);
  if (diagnostics_) {
    if (task_observer* observer = diagnostics::pool_observer()) {
      observers_.insert(observers_.begin(), observer);
    }
  }
  scheduler_.work_started();  // workers keep running it while they wait for tasks
  start_threads(name_prefix);
}

pool_core::~pool_core() {
  // thread_pool's destructor ends the threads first (and then destroys the
  // scheduler with the other services, so it is not touched again here);
  // what is left are Asio handlers executed after the close, destroyed unrun
  // as an io_context does.
  if (!threads_ended_) end_threads();
  destroy_queued_tasks();
  drain_recycled();
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

void pool_core::worker_main(std::size_t index, const std::string& name) {
  // Linux allows 15 bytes plus the terminator; a longer name fails with ERANGE.
  const std::string short_name = name.substr(0, 15);
  pthread_setname_np(pthread_self(), short_name.c_str());
  current_worker = {this, index};
  for (task_observer* observer : observers_) observer->on_thread_start(index);
  // How often a busy worker lets ready timer and I/O handlers run.
  constexpr unsigned io_poll_interval = 64;
  unsigned since_poll = 0;
  boost::system::error_code ignored;
  for (;;) {
    try {
      if (stopping_.load(std::memory_order_acquire)) break;
      if (task_node* task = pop()) {
        task->complete(true);
        if (++since_poll == io_poll_interval) {
          since_poll = 0;
          scheduler_.poll_one(ignored);
        }
        continue;
      }
      since_poll = 0;
      if (scheduler_.poll_one(ignored) != 0) continue;
      // No spinning before sleeping: with as many workers as cores, a
      // spinning worker takes the core from the thread that feeds it (64
      // spins and 4 yields cost a third of the throughput from outside).
      if (!io_waiter_taken_.exchange(true, std::memory_order_acq_rel)) {
        // The I/O waiter sleeps in the scheduler, so that timers and I/O
        // wake it too; push() wakes it with a no-op handler. Announce
        // ourselves before the last look at the queue: see push().
        io_sleepers_.fetch_add(1, std::memory_order_seq_cst);
        struct release_role {
          pool_core& pool;
          ~release_role() {  // also when a raw handler throws out of run_one
            pool.io_sleepers_.fetch_sub(1, std::memory_order_seq_cst);
            bool wake_parked = false;
            {
              std::lock_guard lock(pool.queue_mutex_);
              pool.io_waiter_taken_.store(false, std::memory_order_release);
              wake_parked = pool.parked_ != 0;
            }
            // A parked worker takes the role over, so that timers and I/O
            // are never left waiting for a busy worker.
            if (wake_parked) pool.queue_cv_.notify_one();
          }
        } release{*this};
        if (head_.load(std::memory_order_seq_cst) == nullptr &&
            !stopping_.load(std::memory_order_seq_cst)) {
          scheduler_.run_one(ignored);
        }
      } else {
        std::unique_lock lock(queue_mutex_);
        ++parked_;
        queue_cv_.wait(lock, [this] {
          return head_.load(std::memory_order_relaxed) != nullptr ||
                 stopping_.load(std::memory_order_relaxed) ||
                 !io_waiter_taken_.load(std::memory_order_relaxed);
        });
        --parked_;
      }
    } catch (...) {
      // Only a raw handler posted straight to io() can throw here; ctxpool's
      // own tasks catch everything.
      report_exception(std::current_exception(), task_info{});
    }
  }
  for (task_observer* observer : observers_) observer->on_thread_stop(index);
  current_worker = {nullptr, 0};
}

task_node* pool_core::pop() noexcept {
  if (head_.load(std::memory_order_relaxed) == nullptr) return nullptr;  // cheap peek
  task_node* node = nullptr;
  bool more = false;
  bool wake_parked = false;
  {
    std::lock_guard lock(queue_mutex_);
    node = head_.load(std::memory_order_relaxed);
    if (node == nullptr) return nullptr;
    head_.store(node->next, std::memory_order_relaxed);
    if (node->next == nullptr) tail_ = nullptr;
    more = node->next != nullptr;
    wake_parked = more && parked_ != 0;
  }
  // More work than this worker can take: pass the wake-up on.
  if (wake_parked) {
    queue_cv_.notify_one();
  } else if (more && io_sleepers_.load(std::memory_order_seq_cst) != 0) {
    wake_one();
  }
  return node;
}

void pool_core::wake_one() noexcept {
  // One wake-up in flight at a time; the worker it wakes passes it on (pop).
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  scheduler_.post_immediate_completion(&wake_op_, /*is_continuation=*/false);
}

void* pool_core::allocate_task(std::size_t size) {
  if (void* block = small_alloc_cached(size)) return block;
  if (!CTXPOOL_ASAN && size <= small_alloc_max) {
    std::atomic<recycled_block*>& stack = recycled_[small_alloc_class(size)];
    if (stack.load(std::memory_order_relaxed) != nullptr) {
      recycled_block* list = stack.exchange(nullptr, std::memory_order_acquire);
      if (list != nullptr) {
        // Keep one, move the rest into this thread's cache for the next tasks.
        for (recycled_block* rest = list->next; rest != nullptr;) {
          recycled_block* next = rest->next;
          small_free(rest, size);
          rest = next;
        }
        return list;
      }
    }
  }
  return small_alloc(size);
}

void pool_core::free_task(void* block, std::size_t size) noexcept {
  // Under ASan every block goes back to the allocator, so that it sees each
  // use after free (TSan keeps the recycling, to check it).
  if (CTXPOOL_ASAN || size > small_alloc_max || current_worker.pool != this) {
    small_free(block, size);
    return;
  }
  std::atomic<recycled_block*>& stack = recycled_[small_alloc_class(size)];
  auto* node = static_cast<recycled_block*>(block);
  node->next = stack.load(std::memory_order_relaxed);
  while (!stack.compare_exchange_weak(node->next, node, std::memory_order_release,
                                      std::memory_order_relaxed)) {
  }
}

void pool_core::drain_recycled() noexcept {
  for (std::size_t c = 0; c < small_alloc_classes; ++c) {
    recycled_block* list = recycled_[c].exchange(nullptr, std::memory_order_acquire);
    while (list != nullptr) {
      recycled_block* next = list->next;
      small_free(list, small_alloc_class_size(c));
      list = next;
    }
  }
}

void pool_core::destroy_queued_tasks() noexcept {
  task_node* node = nullptr;
  {
    std::lock_guard lock(queue_mutex_);
    node = head_.exchange(nullptr, std::memory_order_relaxed);
    tail_ = nullptr;
  }
  while (node != nullptr) {
    task_node* next = node->next;
    node->complete(false);
    node = next;
  }
}

void pool_core::end_threads() noexcept {
  {
    std::lock_guard lock(queue_mutex_);  // parked workers check stopping_ under it
    stopping_.store(true, std::memory_order_seq_cst);
  }
  queue_cv_.notify_all();
  if (std::exchange(scheduler_work_, false)) scheduler_.work_finished();
  scheduler_.stop();  // wakes the worker sleeping in run_one
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
  {
    // Nothing can run any more: a wait() in progress or to come returns.
    std::lock_guard lock(idle_mutex_);
    threads_gone_ = true;
  }
  idle_cv_.notify_all();
}

std::uint64_t pool_core::next_task_id() const noexcept {
  return diagnostics_ ? diagnostics::next_task_id() : 0;
}

void pool_core::notify_idle() noexcept {
  std::lock_guard lock(idle_mutex_);
  idle_cv_.notify_all();
}

void pool_core::wait_idle(std::uint64_t mask) {
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  {
    std::unique_lock lock(idle_mutex_);
    idle_cv_.wait(lock, [this, mask] {
      return (outstanding_.load(std::memory_order_seq_cst) & mask) == 0 || threads_gone_;
    });
  }
  waiters_.fetch_sub(1, std::memory_order_seq_cst);
}

void pool_core::wait() {
  if (running_in_this_thread()) throw_called_from_worker("wait()");
  wait_idle(~std::uint64_t{0});
}

void pool_core::join() {
  if (running_in_this_thread()) throw_called_from_worker("join()");
  std::lock_guard lock(lifecycle_mutex_);
  if (threads_ended_) return;
  // Running tasks may still submit while we wait; only then close, and wait
  // again for any submit that raced with the close (see add_task).
  wait_idle(~std::uint64_t{0});
  closed_.store(true, std::memory_order_seq_cst);
  wait_idle(~std::uint64_t{0});
  end_threads();
  threads_ended_ = true;
}

void pool_core::finish() {
  std::lock_guard lock(lifecycle_mutex_);
  if (threads_ended_) return;
  // As join(), but waiting for tasks only: tracked work (a timer, an accept)
  // may never end, and the owner destroys it once the threads are gone.
  wait_idle(task_mask);
  closed_.store(true, std::memory_order_seq_cst);
  wait_idle(task_mask);
  end_threads();
  threads_ended_ = true;
}

void pool_core::stop(void (*shutdown_services)(boost::asio::execution_context&)) {
  if (running_in_this_thread()) throw_called_from_worker("stop()");
  std::lock_guard lock(lifecycle_mutex_);
  // Stop the workers before closing: a running task that sees the pool
  // closed must not be followed by another task on its worker.
  {
    std::lock_guard queue_lock(queue_mutex_);
    stopping_.store(true, std::memory_order_seq_cst);
  }
  queue_cv_.notify_all();
  scheduler_.stop();
  closed_.store(true, std::memory_order_seq_cst);
  if (!threads_ended_) {
    end_threads();  // each worker returns after its current task
    threads_ended_ = true;
  }
  // Destroys queued tasks (their promises report broken_promise) and pending
  // timer waits on this thread, before stop() returns. A submit that passed
  // the closed check before we closed finds the queue abandoned and throws
  // pool_closed (see push), so none can slip in after this.
  {
    std::lock_guard queue_lock(queue_mutex_);
    queue_abandoned_ = true;
  }
  destroy_queued_tasks();
  if (!handlers_destroyed_) {
    shutdown_services(owner_);
    handlers_destroyed_ = true;
  }
}

void pool_core::set_exception_handler(exception_handler handler) {
  std::shared_ptr<const exception_handler> installed;
  if (handler) installed = std::make_shared<const exception_handler>(std::move(handler));
  std::lock_guard lock(handler_mutex_);
  handler_.swap(installed);
}

void pool_core::report_exception(std::exception_ptr error, const task_info& info) noexcept {
  std::shared_ptr<const exception_handler> handler;
  {
    std::lock_guard lock(handler_mutex_);
    handler = handler_;
  }
  if (!handler) {
    print_task_exception(error, info);
    return;
  }
  try {
    (*handler)(error, info);
  } catch (...) {
    print_handler_failure(std::current_exception(), error, info);
  }
}

void pool_core::notify_begin(const task_info& info) noexcept {
  for (task_observer* observer : observers_) observer->on_task_begin(info);
}

void pool_core::notify_end(const task_info& info) noexcept {
  // Reverse order, so that observers nest like scopes.
  for (auto it = observers_.rbegin(); it != observers_.rend(); ++it) (*it)->on_task_end(info);
}

pool_core::counts pool_core::snapshot_counts() const noexcept {
  std::uint64_t started = foreign_counters_.started.load(std::memory_order_relaxed);
  std::uint64_t completed = foreign_counters_.completed.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < thread_count_; ++i) {
    completed += counters_[i].completed.load(std::memory_order_relaxed);
    started += counters_[i].started.load(std::memory_order_relaxed);
  }
  const std::uint64_t running = started > completed ? started - completed : 0;
  const std::int64_t tasks =
      static_cast<std::int64_t>(outstanding_.load(std::memory_order_relaxed) & task_mask);
  const std::int64_t queued = tasks - static_cast<std::int64_t>(running);
  return {static_cast<std::size_t>(std::max<std::int64_t>(queued, 0)),
          static_cast<std::size_t>(running), completed};
}

}  // namespace detail

thread_pool::thread_pool(thread_pool_options options, detail::pool_tuning tuning)
    : core_(std::make_unique<detail::pool_core>(*this, options.threads,
                                                std::move(options.name_prefix),
                                                std::move(options.observers), tuning)) {}

thread_pool::~thread_pool() {
  if (core_->running_in_this_thread()) {
    // A destructor cannot throw, and joining the calling thread cannot work.
    std::fputs(
        "ctxpool: usage error: a thread_pool is being destroyed by one of its own tasks, which "
        "would have to wait for itself to end. Destroy the pool from a thread outside it (the "
        "one that created it, say); to end it from inside a task, call stop() or join() from "
        "that outside thread after the task signals it.\n",
        stderr);
    std::abort();
  }
  // End of life: every queued task runs (finish), then pending operations
  // are destroyed with the services (shutdown), their coroutine frames with
  // them; work handed to the executor during that is destroyed unrun; the
  // services go (destroy) while the core they report to still exists.
  core_->finish();
  shutdown();
  core_->destroy_queued_tasks();
  destroy();
}

void thread_pool::stop() {
  core_->stop([](boost::asio::execution_context& owner) {
    static_cast<thread_pool&>(owner).shutdown();
  });
}

std::size_t thread_pool::checked_count(std::size_t threads) {
  if (threads == 0) {
    throw std::invalid_argument(
        "ctxpool::thread_pool: 0 threads requested; a pool needs at least one (use the default "
        "constructor for one per hardware thread)");
  }
  return detail::resolve_thread_count(threads);
}

thread_pool_stats thread_pool::stats() const noexcept {
  const detail::pool_core::counts counts = core_->snapshot_counts();
  return {core_->thread_count(), counts.queued, counts.running, counts.completed};
}

}  // namespace ctxpool
