// Data watchpoints on the calling thread's copy of a few variables, armed for
// one task: the first access to each is recorded (the PC after the accessing
// instruction, and whether it changed the bytes), never more than one trap
// per variable per task.
//
// Hardware (Linux perf_event_open, PERF_TYPE_BREAKPOINT, read/write, user
// space only, this thread only): one file descriptor per debug register and
// thread, kept and moved with PERF_EVENT_IOC_MODIFY_ATTRIBUTES; the trap is a
// synchronous SIGTRAP (`sigtrap` attribute, TRAP_PERF) or, on kernels before
// 5.13, F_SETSIG delivery to the thread (F_OWNER_TID). A variable of up to 8
// bytes takes one register, a larger one two (its first 16 bytes: the
// pointer and size of a string or vector; an access only further in is not
// seen). `install_watchpoints` probes that a watchpoint really fires: some virtual
// machines accept breakpoints whose debug registers never trigger.
//
// Single step (x86-64): the task runs with the trap flag set; each
// instruction's memory operands are decoded (capstone) and compared with the
// watched ranges, until every watched variable was touched. Exact and with no
// register limit, but each instruction costs a trap: for tests and machines
// without working debug registers, never the default. Tracing stops at a
// system call that blocks SIGTRAP or creates a thread or process (glibc's
// pthread_create does both), so a first access after it is not seen.
//
// The SIGTRAP handler is async-signal-safe (preallocated per-thread storage,
// ioctl) but for one call: backtrace(), to name the callers (primed by
// install_watchpoints, so that it does not load libgcc_s inside the handler).
// It chains to the handler installed before it for traps not ours.
//
// @par Thread safety
// `install_watchpoints` once, before tasks; `arm_watchpoints`/`disarm_watchpoints`
// on the worker, in pairs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "monitor.hpp"

namespace ctxpool::diagnostics::detail::plain_tls {

/// One variable to watch during the next task.
struct watch_request {
  std::uint32_t var = 0;
  unsigned char* addr = nullptr;  ///< this thread's copy
  std::size_t size = 0;
  const unsigned char* before = nullptr;  ///< its bytes at task begin (snapshot)
};

inline constexpr std::size_t max_callers = 8;

/// What the watcher knows of the access itself: the instrumented build's
/// callbacks know load from store; a trap does not.
enum class known_access : std::uint8_t { unknown, load, store };

/// The first access to one watched variable.
struct watch_hit {
  std::uint32_t var = 0;
  std::uintptr_t pc_after = 0;  ///< where the thread resumed (after the instruction)
  std::uintptr_t insn_pc = 0;   ///< the accessing instruction if known (single step), else 0
  bool changed = false;         ///< the variable's bytes differed from `before` at the trap
  /// Return addresses of the accessing function's callers, innermost first:
  /// the read site of an access inside an out-of-line library function
  /// (`std::string::_M_assign` in libstdc++.so) is in one of them.
  std::uintptr_t callers[max_callers] = {};
  std::size_t caller_count = 0;
  /// Single step only: the access read, and one of the next
  /// store_follow_window instructions stored into the variable (an
  /// assignment of an equal value leaves the bytes as they were).
  bool stored_after_read = false;
  /// Instrumented build: the access was a load or a store (insn_pc is then
  /// inside the call to the callback, on the access's own source line).
  known_access known = known_access::unknown;
};

/// Instructions the single-step backend follows after a first access that
/// reads, looking for a store into the same variable (an assignment through
/// sanitizer-instrumented code, ASan's memcpy among it, takes a few hundred).
inline constexpr std::size_t store_follow_window = 2000;

/// At most this many variables are armed per task (the single-step backend
/// takes as many; hardware as its registers allow).
inline constexpr std::size_t max_watched_per_task = 16;

/// Instructions the single-step backend traces per task at most: a task that
/// has not touched a watched variable by then leaves it unwatched for that
/// task (counted by single_step_budget_misses). Bounds the cost of a long
/// task to about a second on a virtual machine where each step traps out.
inline constexpr std::size_t single_step_budget = 20000;

/// Sets the backend up for `mode` (automatic/hardware: probe that a hardware
/// watchpoint fires on this machine; `instrumented` and `off` install none).
/// False with `why` set when no backend can be had; the caller then never arms.
bool install_watchpoints(watch_mode mode, std::string& why);

/// Debug registers per task (4 on x86-64), or max_watched_per_task for
/// single step.
[[nodiscard]] std::size_t watch_registers() noexcept;

/// Registers one variable of `size` bytes takes.
[[nodiscard]] std::size_t registers_for(std::size_t size) noexcept;

/// Arms `n` requests for the coming task on the calling thread. Returns how
/// many were armed (a request that does not fit, or whose address cannot be
/// watched, is skipped).
std::size_t arm_watchpoints(const watch_request* requests, std::size_t n) noexcept;

/// Disarms everything armed on this thread; writes the hits (in request
/// order) to `out` and returns their number.
std::size_t disarm_watchpoints(watch_hit* out, std::size_t capacity) noexcept;

/// Watched variables a task left untouched when its single-step budget ran out.
[[nodiscard]] std::uint64_t single_step_budget_misses() noexcept;

}  // namespace ctxpool::diagnostics::detail::plain_tls
