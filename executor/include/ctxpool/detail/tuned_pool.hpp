// A thread_pool built with detail::pool_tuning: for tests and benchmarks
// that price the pool's per-task work, never for production code.
//
// @par Thread safety
// As thread_pool.
//
// @par Lifetime
// As thread_pool.
#pragma once

#include <utility>

#include <ctxpool/detail/pool_core.hpp>
#include <ctxpool/thread_pool.hpp>

namespace ctxpool::detail {

/// A thread_pool whose `tuning` can switch propagation and the wipe off.
class tuned_thread_pool : public thread_pool {
 public:
  tuned_thread_pool(thread_pool_options options, pool_tuning tuning)
      : thread_pool(std::move(options), tuning) {}
};

}  // namespace ctxpool::detail
