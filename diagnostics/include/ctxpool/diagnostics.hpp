// Residue detection: the diagnostic mode that reports stale thread-local reads.
//
// Thread pools reuse threads, and a value a task leaves in a thread-local is
// seen by the next task on that thread: the anonymous request that runs with
// the previous request's auth token. ctxpool wipes `lifetime::task` slots after
// every task; in diagnostic mode the wipe leaves a tombstone naming the writer,
// and a later task that reads the slot is reported (a *stale read*): on an
// ordinary pool it would have seen the earlier task's value. The read itself
// still behaves as in production (the value is gone).
//
// Switch it on with `CTXPOOL_DIAGNOSTICS=residue[:options]` (see
// <ctxpool/diagnostics/options.hpp>) or `enable()`. Findings are printed to
// stderr as they occur (once each; repeats are counted), and at exit one
// `SUMMARY: ctxpool: <kind>: N finding(s), M occurrence(s)` line is printed
// per kind found, then the process exits with status 66 (`exitcode=`). A
// clean run prints nothing and keeps its own exit status.
//
// Not reported, by design: `lifetime::thread` slots (deliberate caches); a
// value the reading task wrote itself; values written outside any task (a
// thread start hook); anything on another thread (a coroutine resuming on
// another worker, a strand hopping threads: tombstones are per thread).
//
// Reported, with a note: a coroutine's later step (after `co_await`) reading a
// thread-local its earlier step wrote, on the same thread. The pool's
// executor runs each step as a task in a continuation of the same context,
// but so it runs every handler posted from one context (every connection a
// coroutine acceptor spawns), so the context cannot tell "my own earlier
// step" from "another request": staying silent would hide the headline bug.
// And the read is a bug either way: on another worker the step reads nothing,
// or another request's value. Keep such state in a `context_var`, which
// follows the coroutine. The finding's `same_context` flag marks these.
//
// Pools call `enabled()`, `pool_observer()` and `next_task_id()`; a
// hand-written worker loop uses `task_scope`.
//
// @par Thread safety
// `enabled`, `pool_observer` and `next_task_id` may be called from any thread.
// `enable` and `disable` are for start-up and for tests: call them while no
// task runs.
//
// @par Lifetime
// The detector is process-wide and never destroyed; pointers it hands out stay
// valid for the life of the process.
#pragma once

#include <cstdint>

#include <ctxpool/diagnostics/findings.hpp>
#include <ctxpool/diagnostics/options.hpp>
#include <ctxpool/diagnostics/task_scope.hpp>
#include <ctxpool/diagnostics/thread_cache.hpp>
#include <ctxpool/hooks.hpp>

namespace ctxpool::diagnostics {

/// Whether residue detection is on (CTXPOOL_DIAGNOSTICS=residue[:options], or
/// `enable()`). Cheap; pools read it once when they are constructed.
[[nodiscard]] bool enabled() noexcept;

/// The observer a pool adds to its task observers when detection is on, so
/// that diagnostics knows which task runs on which thread; nullptr when off.
[[nodiscard]] task_observer* pool_observer() noexcept;

/// A fresh, process-unique task id (the first is 1). Pools call it per task
/// only when detection is on.
[[nodiscard]] std::uint64_t next_task_id() noexcept;

/// Switches detection on (or, with `mode::off`, off) with `opts`, replacing
/// the environment's configuration: reads the suppressions file, opens the
/// report, installs the residue observer and the exit handler.
/// @throws config_error if the suppressions file cannot be read or parsed or
///         the report cannot be opened for writing.
void enable(options opts = {});

/// Switches detection off; recorded findings stay until taken or cleared.
void disable() noexcept;

/// The options in force (mode::off when detection is off).
[[nodiscard]] options current_options();

}  // namespace ctxpool::diagnostics
