// Seed implementation: detection off. Replaced by the diagnostics layer.
#include <ctxpool/diagnostics.hpp>

#include <atomic>

namespace ctxpool::diagnostics {

bool enabled() noexcept { return false; }

task_observer* pool_observer() noexcept { return nullptr; }

std::uint64_t next_task_id() noexcept {
  static constinit std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace ctxpool::diagnostics
