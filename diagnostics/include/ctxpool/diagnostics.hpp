// Residue detection: the diagnostic mode that reports stale thread-local reads.
//
// Thread pools reuse threads, and a value a task leaves in a thread-local is
// seen by the next task on that thread: the anonymous request that runs with
// the previous request's auth token. ctxpool wipes `lifetime::task` slots after
// every task, so in production the read finds nothing; residue detection
// finds the code that would have read someone else's value on any other pool.
//
// Switch it on with `CTXPOOL_DIAGNOSTICS=residue[:options]` (see
// <ctxpool/diagnostics/options.hpp>) or `enable()`. Findings are printed to
// stderr as they occur (once each; repeats are counted), and at exit one
// `SUMMARY: ctxpool: <kind>: N finding(s), M occurrence(s)` line is printed
// per kind found, then the process exits with status 66 (`exitcode=`). A
// clean run prints nothing and keeps its own exit status.
//
// The model does not depend on the schedule, like ThreadSanitizer's: one run
// catches the bug whichever worker each task lands on. Per variable and
// process-wide, the detector learns
//   - which tasks *leave it dirty*: end with a value in a `thread_local_var`
//     (a non-empty `local_stack`; a plain `thread_local` changed from what it
//     was when the task began), with the task, its submit site, the write
//     site and how many tasks did so;
//   - which tasks *read it before writing it*: the task's first access to it
//     is a read (`value`, `value_or`, `has_value`, `top`, `pop`, `size`,
//     `empty`; for a `local_stack` that some task leaves non-empty, any first
//     access, a `push` included, since it lands on the leftovers).
// A variable with both is a finding, whatever threads the two ran on and in
// either order (the reader may come first): kinds
//   - `stale-read`: one finding per (variable, leaving site, reading site),
//     naming both tasks (id, submit site), the read and write sites and how
//     many tasks left the variable dirty; occurrences are counted;
//   - `read-across-suspension`: the reader continues the context lineage of
//     the task that left the value (a coroutine's later step, after
//     `co_await`, reading first what an earlier step wrote): reported every
//     time, whichever worker it resumes on. Work posted from one context
//     shares its lineage too, so handlers posted from one context that pass
//     a thread-local between them are reported this way. Keep such state in
//     a `context_var`, which follows the coroutine;
//   - `residue`: a plain `thread_local` left changed where its reads cannot be
//     watched (see below), or one registered with `watch_thread_local` left
//     changed (ctxpool restored it).
//
// Not reported, by design: `lifetime::thread` slots and declared caches
// (`CTXPOOL_THREAD_CACHE`, `thread-cache:` suppressions); a task reading what
// it wrote (or reset) itself; values written and reads made outside any task
// (a thread start hook); values that travel by `context_var`. A task run
// inline inside another (an `asio::dispatch` from a pool thread) is a task of
// its own: its first read of a slot its dispatcher left dirty is reported,
// because queued it would not see that value.
//
// Plain `thread_local`s (Linux; `thread_locals=0` switches it off): the
// program's own modules' variables are discovered with no code change; one a
// task leaves changed is left dirty, and a later task's first access to it is
// watched: a read first is a `stale-read` naming the variable, its module and
// size, and the reading instruction's function and source line. Assignments
// that read the old state to replace it count as writes; guard variables,
// first-use initialisation and the shipped list of common libraries' caches
// (`default_suppressions=0` switches it off) are never findings. The watcher,
// chosen at start-up:
//   - code built with the CMake function `ctxpool_enable_residue_instrumentation`
//     (clang >= 14; the residue CI build): clang's load/store callbacks see the
//     first access of every watched variable in every task, on any machine;
//     reads by code that is not instrumented are not seen. Per task it copies
//     and compares the variables' bytes (a few memcpy/memcmp calls, whatever
//     their number): under 3x the same build with detection off for tasks of
//     ~1,000 instructions and up (README, bench/plain_tls_instrumented_bench);
//   - else hardware watchpoints where a start-up probe sees one fire (4 debug
//     registers per task, more variables watched in turn);
//   - single-stepping only with `CTXPOOL_PLAIN_TLS_WATCH=single-step` (about
//     25 us per instruction);
//   - else none (GCC builds in containers that refuse `perf_event_open`,
//     virtual machines whose debug registers never fire, ThreadSanitizer): one
//     notice at start-up names the cause and the way to full detection, and a
//     variable left changed is reported alone as `residue`, at normal speed.
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
