// One queued task: an intrusive node holding the callable and only what
// running it needs.
//
// A million queued tasks are a million of these, so the node is as small as
// the task allows: with a 32-byte callable it is 64 bytes, one cache line and
// one small_alloc block. What a task needs depends on how it was queued:
//   - a fresh task (submit/post) keeps its submitter's context map (one word)
//     and its submit site (one word, for exception reports); it gets a new
//     identity when it runs, so the snapshot's identity is not kept;
//   - a continuation (an Asio handler through the executor) keeps the map and
//     the identity it continues, and has no submit site;
//   - when detection is on or the pool has observers, every task keeps the
//     whole task_info (id, site, name) that they are given.
//
// @par Thread safety
// A node belongs to one thread at a time: its submitter until it is queued,
// then the worker that took it. `next` is the only member the queue shares.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <source_location>
#include <utility>

#include <ctxpool/context.hpp>
#include <ctxpool/hooks.hpp>

namespace ctxpool::detail {

class pool_core;

/// The type-erased part of a queued task.
class task_node {
 public:
  /// The link in the injection queue (published by an atomic exchange).
  std::atomic<task_node*> next{nullptr};

  /// Runs the task (`run`) or abandons it (stop(), a pool ending with work
  /// queued after its close); either way the node is destroyed and freed and
  /// the pool's work count drops by one.
  void complete(pool_core& pool, bool run) noexcept { complete_(this, pool, run); }

  using complete_fn = void (*)(task_node*, pool_core&, bool) noexcept;
  /// Whether the node's kind is the one completed by `f` (a task_group
  /// child, say), so that a thread that took it may look at it as one.
  [[nodiscard]] bool completes_with(complete_fn f) const noexcept { return complete_ == f; }

 protected:
  explicit task_node(complete_fn on_complete) noexcept : complete_(on_complete) {}
  ~task_node() = default;

 private:
  complete_fn complete_;
};

/// A submit/post task on a pool without observers: the context map and the
/// submit site.
class fresh_task_header {
 public:
  static constexpr bool continuation = false;
  fresh_task_header(captured_context&& snapshot, const task_info& info) noexcept
      : map_(snapshot.release_map()), where_(info.submit_site) {}
  [[nodiscard]] captured_context take_context() noexcept {
    return captured_context::adopt(std::exchange(map_, nullptr), 0);
  }
  [[nodiscard]] task_info info() const noexcept { return {0, where_, {}}; }

 private:
  map_node* map_;
  std::source_location where_;
};

/// An Asio handler on a pool without observers: the map and the identity it
/// continues (a coroutine's steps share their token identity).
class continuation_task_header {
 public:
  static constexpr bool continuation = true;
  continuation_task_header(captured_context&& snapshot, const task_info&) noexcept
      : lineage_(snapshot.lineage()), map_(snapshot.release_map()) {}
  [[nodiscard]] captured_context take_context() noexcept {
    return captured_context::adopt(std::exchange(map_, nullptr), lineage_);
  }
  [[nodiscard]] static task_info info() noexcept { return {0, {}, "asio handler"}; }

 private:
  std::uint64_t lineage_;
  map_node* map_;
};

/// Any task on a pool with observers (detection among them): the whole
/// task_info they receive.
template <bool Continuation>
class observed_task_header {
 public:
  static constexpr bool continuation = Continuation;
  observed_task_header(captured_context&& snapshot, const task_info& info) noexcept
      : snapshot_(std::move(snapshot)), info_(info) {}
  [[nodiscard]] captured_context take_context() noexcept { return std::move(snapshot_); }
  [[nodiscard]] const task_info& info() const noexcept { return info_; }

 private:
  captured_context snapshot_;
  task_info info_;
};

/// The node for callable `F` with header `Header`. The callable lives in a
/// union so that the node controls when it is destroyed: inside the task's
/// context and slot scopes when the task runs (destructors that write
/// variables are cleaned up too), outside any when it is abandoned.
template <class F, class Header>
class task_node_impl final : public task_node {
 public:
  template <class G>
  task_node_impl(G&& f, captured_context&& snapshot, const task_info& info)
      : task_node(&do_complete<pool_core>), header_(std::move(snapshot), info) {
    try {
      std::construct_at(std::addressof(f_), std::forward<G>(f));
    } catch (...) {
      (void)header_.take_context();  // gives the map's reference back
      throw;
    }
  }
  ~task_node_impl() {}  // f_ is destroyed by do_complete (or by pool_core::run_task)

 private:
  /// task_node::complete for this node. `Pool` is always pool_core: a
  /// template parameter so that this header needs only its declaration
  /// (pool_core.hpp includes this one).
  template <class Pool>
  static void do_complete(task_node* base, Pool& pool, bool run) noexcept;

  Header header_;
  union {
    F f_;
  };
};

template <class F, class Header>
template <class Pool>
void task_node_impl<F, Header>::do_complete(task_node* base, Pool& pool, bool run) noexcept {
  auto* self = static_cast<task_node_impl*>(base);
  if (run) {
    // The task's context consumes the snapshot and drops it before the work
    // count: once wait() returns, values held only by finished tasks are gone.
    pool.run_task(self->f_, self->header_.take_context(), Header::continuation,
                  self->header_.info());
  } else {
    std::destroy_at(std::addressof(self->f_));
    (void)self->header_.take_context();
  }
  self->~task_node_impl();
  pool.free_task(self, sizeof(task_node_impl));  // before remove_work: the pool may go then
  pool.remove_finished_task();
}

}  // namespace ctxpool::detail
