// thread_pool's out-of-line members, the pool's errors and its observer
// calls (the worker loop is in worker_loop.cpp, the lifecycle in
// pool_lifecycle.cpp, exception reports in task_exceptions.cpp).
#include <ctxpool/thread_pool.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

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

void pool_core::notify_begin(const task_info& info) noexcept {
  for (task_observer* observer : observers_) observer->on_task_begin(info);
}

void pool_core::notify_end(const task_info& info) noexcept {
  // Reverse order, so that observers nest like scopes.
  for (auto it = observers_.rbegin(); it != observers_.rend(); ++it) (*it)->on_task_end(info);
}

}  // namespace detail

thread_pool& pool_executor::query(boost::asio::execution::context_t) const noexcept {
  return static_cast<thread_pool&>(core().owner());
}

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
  core_->stop(
      [](boost::asio::execution_context& owner) { static_cast<thread_pool&>(owner).shutdown(); });
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
