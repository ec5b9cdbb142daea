// Residue detection: the diagnostic mode that reports stale thread-local reads.
//
// (Interface seed: the diagnostics layer fills this in. The three functions
// below are what the executor relies on and must keep their meaning.)
#pragma once

#include <cstdint>

#include <ctxpool/hooks.hpp>

namespace ctxpool::diagnostics {

/// Whether residue detection is on (CTXPOOL_DIAGNOSTICS=residue[:options]).
/// Cheap after the first call; pools read it once when they are constructed.
[[nodiscard]] bool enabled() noexcept;

/// The observer a pool adds to its task observers when detection is on, so
/// that diagnostics knows which task runs on which thread; nullptr when off.
[[nodiscard]] task_observer* pool_observer() noexcept;

/// A fresh, process-unique task id (the first is 1). Pools call it per task
/// only when detection is on.
[[nodiscard]] std::uint64_t next_task_id() noexcept;

}  // namespace ctxpool::diagnostics
