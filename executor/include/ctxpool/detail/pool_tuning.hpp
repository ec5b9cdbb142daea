// pool_tuning: the switches that price a pool's per-task work, for tests
// and benchmarks (detail::tuned_thread_pool).
#pragma once

namespace ctxpool::detail {

/// Test- and benchmark-only switches that price the pool's per-task work.
/// Production code never sets them: a pool without propagation and wipe is an
/// ordinary pool with all the residue bugs ctxpool exists to prevent.
struct pool_tuning {
  bool propagate_context = true;  ///< capture at submit, enter a fresh context on the worker
  bool wipe_slots = true;         ///< slot_wipe_scope around each task
};

}  // namespace ctxpool::detail
