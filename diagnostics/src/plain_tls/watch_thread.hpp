// The per-thread state the SIGTRAP handler works on, shared by the hardware
// watchpoints (watchpoints_linux.cpp) and the x86-64 single-step tracer
// (watchpoints_single_step.cpp): allocated before arming, so that the
// handler touches only preallocated memory; and recording a hit.
//
// @par Thread safety
// Each thread's state is its own; the handler runs on the thread it traps.
#pragma once

#include <signal.h>
#include <ucontext.h>

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__)
#include <capstone/capstone.h>
#endif

#include "watchpoints.hpp"

namespace ctxpool::diagnostics::detail::plain_tls {

#if defined(__x86_64__) || defined(__i386__)
constexpr std::size_t hw_registers = 4;
#elif defined(__aarch64__)
constexpr std::size_t hw_registers = 2;  // the smallest count Arm v8 guarantees
#else
constexpr std::size_t hw_registers = 0;
#endif

struct debug_register {
  int fd = -1;
  bool enabled = false;
  std::uint32_t request = 0;
};

/// Everything the signal handler touches, allocated before arming.
struct thread_watch {
  debug_register registers[hw_registers > 0 ? hw_registers : 1];
  watch_request requests[max_watched_per_task];
  std::size_t count = 0;
  volatile sig_atomic_t hit[max_watched_per_task] = {};
  std::uintptr_t pc_after[max_watched_per_task] = {};
  std::uintptr_t insn_pc[max_watched_per_task] = {};
  bool changed[max_watched_per_task] = {};
  std::uintptr_t callers[max_watched_per_task][max_callers] = {};
  std::size_t caller_count[max_watched_per_task] = {};
  volatile sig_atomic_t active = 0;
#if defined(__x86_64__)
  // single step
  csh capstone = 0;
  cs_insn* insn = nullptr;
  volatile sig_atomic_t stepping = 0;
  bool have_previous = false;
  std::uintptr_t previous_pc = 0;
  greg_t previous[NGREG] = {};
  std::uintptr_t fs_base = 0;
  std::size_t remaining = 0;   // requests not resolved yet
  std::size_t steps_left = 0;  // instruction budget of the current task
  // After a first access that reads, the next instructions are followed for a
  // store into the same variable: an assignment reads the old state first.
  std::size_t follow[max_watched_per_task] = {};
  bool stored_after_read[max_watched_per_task] = {};
#endif
};

/// The calling thread's state, or null before this_thread_watch(); plain
/// (trivially destructible) for the signal handler.
extern constinit thread_local thread_watch* current_watch;

/// The calling thread's state, allocated on first use (not in the handler)
/// and freed when the thread exits.
thread_watch& this_thread_watch();

/// Records the first access to request `r` (async-signal-safe but for
/// backtrace(), primed by install_watchpoints): where the thread resumed,
/// the accessing instruction if known, its callers, whether it changed the bytes.
void record_hit(thread_watch& t, std::size_t r, std::uintptr_t pc_after, std::uintptr_t insn_pc,
                std::uintptr_t resume) noexcept;

#if defined(__x86_64__)
/// Single step: follows one traced instruction (from the SIGTRAP handler).
void on_step(thread_watch& t, ucontext_t* uc) noexcept;

/// Single step: sets or clears the calling thread's trap flag.
void set_trap_flag(bool on) noexcept;

/// Single step: arms `n` requests and starts tracing; returns how many.
std::size_t arm_single_step(thread_watch& t, const watch_request* requests, std::size_t n) noexcept;
#endif

}  // namespace ctxpool::diagnostics::detail::plain_tls
