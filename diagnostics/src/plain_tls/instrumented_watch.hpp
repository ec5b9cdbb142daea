// First accesses seen through compiler instrumentation: the residue CI build.
//
// Code compiled with ctxpool_enable_residue_instrumentation (clang's
// SanitizerCoverage `trace-loads,trace-stores`) calls
// `__sanitizer_cov_load<N>(addr)` / `__sanitizer_cov_store<N>(addr)` before
// every load and store it makes. Those callbacks live here, in code that is
// not instrumented; each compares the address with the calling thread's TLS
// blocks (one compare per module that has variables) and, inside one, looks
// the variable up in a byte map. Per task and variable that some task left
// dirty (the watched set), the first access is recorded with its kind (load
// or store), the return address into the accessing code, its callers (frame
// pointers, which the CMake function keeps) and whether the variable's bytes
// already differed from the task-start snapshot: a change made first by
// code that is not instrumented (libstdc++'s out-of-line string members)
// makes the access a write. There is no register limit and no instruction
// budget: every watched variable, in every task, for the whole task.
//
// What it misses: reads made by code that is not instrumented (a libstdc++
// `std::string::compare` on the variable, a library built without the flags).
//
// @par Thread safety
// `bind`, `arm` and `disarm` on the worker that runs the task, in pairs; the
// callbacks touch only the calling thread's state. `present` from anywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tls_snapshot.hpp"
#include "watchpoints.hpp"

namespace ctxpool::diagnostics::detail::plain_tls::instrumented {

/// True once some module of the process was built with the instrumentation
/// (its coverage constructor called `__sanitizer_cov_8bit_counters_init`).
[[nodiscard]] bool present() noexcept;

/// Number of instrumented modules seen so far.
[[nodiscard]] std::uint64_t modules() noexcept;

/// Lays out the calling thread's address map for the variables of
/// `snapshot` (bound already); allocates. Called when the layout changes.
void bind(const thread_snapshot& snapshot);

/// Starts watching for one task on the calling thread: first accesses to
/// the variables whose `watched[var]` is set, and the last store into each
/// variable. `watched` has `watched_size` entries and outlives the task.
void arm(const thread_snapshot& snapshot, const std::atomic<bool>* watched,
         std::uint32_t watched_size) noexcept;

/// Stops watching; appends the task's first accesses to watched variables to
/// `hits` (in the order they happened).
void disarm(std::vector<watch_hit>& hits);

/// The last instrumented store into `var` during the task just disarmed on
/// this thread (its return address into the storing code), or 0.
[[nodiscard]] std::uintptr_t last_store(std::uint32_t var) noexcept;

/// Loads and stores the callbacks looked at inside TLS blocks (counters for
/// the summary), process-wide.
[[nodiscard]] std::uint64_t first_accesses() noexcept;

}  // namespace ctxpool::diagnostics::detail::plain_tls::instrumented
