// pool_core's inline and template members, out of the class so that the
// class reads as an outline: the per-task path (queuing a node, running a
// task in its context and slot scopes, running one inline) and the
// fork-join hooks task_group uses. Included at the end of pool_core.hpp
// only.
#pragma once

#include <ctxpool/detail/pool_core.hpp>

namespace ctxpool::detail {

inline std::int64_t pool_core::local_mark() const noexcept {
  const worker_identity me = this_thread_worker();
  return me.pool == this ? workers_[me.index].shared.deque.mark() : no_local_mark;
}

inline bool pool_core::push_local(task_node* node, bool counted) noexcept {
  const worker_identity me = this_thread_worker();
  if (me.pool != this || stopping(std::memory_order_relaxed)) return false;
  local_deque& deque = workers_[me.index].shared.deque;
  if (deque.full()) return false;
  if (counted) add_task(/*check_open=*/false);
  deque.push(node);  // cannot fail: only this thread pushes
  CTXPOOL_PROTOCOL_STEP();
  wake_for_new_work();
  return true;
}

inline bool pool_core::push_injected(task_node* node) noexcept {
  if (stopping(std::memory_order_acquire)) return false;
  add_task(/*check_open=*/false);
  injection_.push(node);
  CTXPOOL_PROTOCOL_STEP();
  wake_for_new_work();
  return true;
}

inline task_node* pool_core::pop_local_above(std::int64_t mark) noexcept {
  const worker_identity me = this_thread_worker();
  CTXPOOL_DEBUG_ASSERT(me.pool == this, "only a worker of this pool pops its deque");
  return workers_[me.index].shared.deque.pop_above(mark);
}

inline task_node* pool_core::steal_for_waiter() noexcept {
  const worker_identity me = this_thread_worker();
  CTXPOOL_DEBUG_ASSERT(me.pool == this, "only a worker of this pool steals");
  for (std::size_t i = 1; i < thread_count_; ++i) {
    std::size_t victim = me.index + i;
    if (victim >= thread_count_) victim -= thread_count_;
    if (task_node* task = workers_[victim].shared.deque.steal()) return task;
  }
  return nullptr;
}

inline void pool_core::requeue(task_node* node) noexcept {
  injection_.push(node);
  CTXPOOL_PROTOCOL_STEP();
  wake_for_new_work();
}

inline void pool_core::prepare_to_help() noexcept {
  if (const worker_identity me = this_thread_worker();
      CTXPOOL_UNLIKELY(me.pool == this && workers_[me.index].own.waits_in_scheduler)) {
    release_io_role();
  }
}

template <class F>
void pool_core::run_counted(F&& f, captured_context&& snapshot, const task_info& info) noexcept {
  union holder {
    explicit holder(F&& g) : f(std::forward<F>(g)) {}
    ~holder() {}  // run_task destroys f
    std::decay_t<F> f;
  } local(std::forward<F>(f));
  run_task(local.f, std::move(snapshot), /*continuation=*/false, info);
}

template <class F>
void pool_core::run_task(F& f, captured_context&& snapshot, bool continuation,
                         const task_info& info) noexcept {
  worker_counters& counters = counters_for_this_thread();
  count(counters, counters.started);
  // A task run inline inside a task_group child (its waiter helping, an
  // Asio dispatch) is not that child: the group's overlay does not apply.
  const cancellation_overlay* const enclosing_overlay =
      std::exchange(this_thread_overlay(), nullptr);
  {
    std::optional<fresh_context_scope> context_scope;
    if (CTXPOOL_LIKELY(tuning_.propagate_context)) {
      context_scope.emplace(std::move(snapshot), continuation);
    }
    {
      std::optional<slot_wipe_scope> slots;
      if (CTXPOOL_LIKELY(tuning_.wipe_slots)) slots.emplace();
      if (observed_) notify_begin(info);
      try {
        f();
      } catch (...) {
        report_exception(std::current_exception(), info);
      }
      std::destroy_at(std::addressof(f));
    }
    if (observed_) notify_end(info);
  }
  this_thread_overlay() = enclosing_overlay;
  count(counters, counters.completed);
}

template <class Header, class F>
void pool_core::enqueue_node(F&& f, captured_context&& snapshot, const task_info& info,
                             bool check_open) {
  using node_type = task_node_impl<std::decay_t<F>, Header>;
  void* block = allocate_task(sizeof(node_type));
  // Asio's execute after the workers were told to end: nothing will run the
  // task, so it is kept aside, uncounted, to be destroyed by stop() or with
  // the pool. Counting it would let a thread that keeps posting keep stop()
  // waiting for the count to reach zero.
  const bool abandoned = !check_open && stopping(std::memory_order_acquire);
  if (!abandoned) {
    try {
      add_task(check_open);
    } catch (...) {
      free_task(block, sizeof(node_type));
      throw;
    }
  }
  node_type* node = nullptr;
  try {
    node = new (block) node_type(std::forward<F>(f), std::move(snapshot), info);
  } catch (...) {
    free_task(block, sizeof(node_type));
    if (!abandoned) remove_work();
    throw;
  }
  if (CTXPOOL_UNLIKELY(abandoned)) {
    keep_abandoned(node);
    return;
  }
  push(node, !Header::continuation);
}

template <class F>
void pool_core::run_inline(F&& f, captured_context snapshot, bool continuation,
                           const task_info& info) noexcept {
  // A handler that the I/O waiter is about to run from inside run_one: the
  // role goes to a parked worker first, so that the other ready handlers and
  // the reactor do not wait for this one.
  if (const worker_identity me = this_thread_worker();
      CTXPOOL_UNLIKELY(me.pool == this && workers_[me.index].own.waits_in_scheduler)) {
    release_io_role();
  }
  work_.add(my_lane(), work_kind::task);
  union holder {
    explicit holder(F&& g) : f(std::forward<F>(g)) {}
    ~holder() {}  // run_task destroys f
    std::decay_t<F> f;
  } local(std::forward<F>(f));
  run_task(local.f, std::move(snapshot), continuation, info);
  remove_finished_task();
}

}  // namespace ctxpool::detail
