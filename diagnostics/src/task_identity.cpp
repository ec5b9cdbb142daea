// Task identity per thread (task_identity.hpp), and the process-wide task ids.
#include "task_identity.hpp"

#include <algorithm>
#include <atomic>
#include <string>

#include <ctxpool/diagnostics.hpp>

namespace ctxpool::diagnostics {
namespace detail {
namespace {

inline constexpr unsigned max_depth = 32;  // deeper nesting is attributed to frame 31

/// Trivially destructible, so that hooks called while the thread's other
/// thread_locals are being destroyed still find it intact.
struct thread_state {
  std::uint64_t ordinal;  // the detector's thread number, 0 until first needed
  std::int64_t worker;    // the pool's worker index, or -1
  unsigned depth;
  bool plain_open;  // plain thread_local tracking began for the outermost task
  frame stack[max_depth];
};
constinit thread_local thread_state ts{0, -1, 0, false, {}};

constinit std::atomic<std::uint64_t> next_thread_ordinal{1};
constinit std::atomic<std::uint64_t> unobserved_scopes{0};

}  // namespace

unsigned push_task(const frame& task) noexcept {
  if (ts.depth < max_depth) ts.stack[ts.depth] = task;
  return ++ts.depth;
}

void pop_task() noexcept {
  if (ts.depth > 0) --ts.depth;
}

unsigned task_depth() noexcept { return ts.depth; }

const frame* current_frame() noexcept {
  if (ts.depth == 0) return nullptr;
  return &ts.stack[std::min(ts.depth, max_depth) - 1];
}

std::uint64_t thread_ordinal() noexcept {
  if (ts.ordinal == 0) ts.ordinal = next_thread_ordinal.fetch_add(1, std::memory_order_relaxed);
  return ts.ordinal;
}

std::int64_t worker_index() noexcept { return ts.worker; }
void set_worker_index(std::int64_t worker) noexcept { ts.worker = worker; }

bool plain_open() noexcept { return ts.plain_open; }
void set_plain_open(bool open) noexcept { ts.plain_open = open; }

task_view view_of(const frame& f) noexcept { return {f.id, f.name, f.submit_site}; }

task_ref ref_of(const frame* f) {
  if (f == nullptr) return {};
  return {f->id, std::string(f->name), f->submit_site};
}

task_ref ref_of(const task_view& task) {
  return {task.id, std::string(task.name), task.submit_site};
}

void count_unobserved_scope() noexcept {
  unobserved_scopes.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace detail

std::uint64_t next_task_id() noexcept {
  static constinit std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t unobserved_tasks() noexcept {
  return detail::unobserved_scopes.load(std::memory_order_relaxed);
}

}  // namespace ctxpool::diagnostics
