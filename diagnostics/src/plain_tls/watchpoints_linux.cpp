// Linux: hardware watchpoints through perf_event_open, the SIGTRAP handler
// shared with the x86-64 single-step tracer (watchpoints_single_step.cpp),
// the probe that checks a watchpoint fires, and arming per task.
#include "watchpoints.hpp"

#include <execinfo.h>
#include <fcntl.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <signal.h>  // NOLINT(modernize-deprecated-headers): sigaction and siginfo_t are POSIX's
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>

#include "watch_thread.hpp"

#if defined(__SANITIZE_THREAD__)
#define CTXPOOL_PLAIN_TLS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CTXPOOL_PLAIN_TLS_TSAN 1
#endif
#endif

#ifndef TRAP_PERF
#define TRAP_PERF 6
#endif

namespace ctxpool::diagnostics::detail::plain_tls {

namespace {

enum class backend : int { none, hardware, single_step };
std::atomic<backend> backend_{backend::none};

// Watched variables left unseen because a task ran out of its single-step
// budget before touching them (counted as unwatched in the summary).
std::atomic<std::uint64_t> budget_misses_{0};

// sig_data tag that tells our traps from anyone else's perf SIGTRAPs.
constexpr unsigned long sig_tag = 0xC7F0'0100UL;
constexpr unsigned long sig_tag_mask = ~0xffUL;

struct sigaction previous_action_ {};

// ---- hardware (perf_event_open) -------------------------------------------------------

unsigned long perf_data(const siginfo_t* si) noexcept {
  // glibc 2.36 does not name the kernel's si_perf_data: it follows si_addr in
  // the fault fields (asm-generic/siginfo.h).
  unsigned long data = 0;
  std::memcpy(&data, reinterpret_cast<const char*>(&si->si_addr) + sizeof(void*), sizeof data);
  return data;
}

std::uintptr_t resume_pc(const ucontext_t* uc) noexcept {
#if defined(__x86_64__)
  return static_cast<std::uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
  return static_cast<std::uintptr_t>(uc->uc_mcontext.pc);
#else
  (void)uc;
  return 0;
#endif
}

void on_hardware_hit(thread_watch& t, std::size_t reg, const ucontext_t* uc) noexcept {
  if (reg >= hw_registers) return;
  std::uint32_t r = t.registers[reg].request;
  if (r < t.count) {
#if defined(__aarch64__)
    // Arm reports a watchpoint at the accessing instruction itself.
    record_hit(t, r, resume_pc(uc) + 4, resume_pc(uc), resume_pc(uc));
#else
    record_hit(t, r, resume_pc(uc), 0, resume_pc(uc));  // x86 traps after the instruction
#endif
    // One trap per variable per task: silence every register of this variable.
    for (debug_register& s : t.registers) {
      if (s.enabled && s.request == r) {
        ::ioctl(s.fd, PERF_EVENT_IOC_DISABLE, 0);
        s.enabled = false;
      }
    }
  }
}

perf_event_attr breakpoint_attr(std::uintptr_t addr, unsigned len, std::size_t reg, bool disabled) {
  perf_event_attr a{};
  a.type = PERF_TYPE_BREAKPOINT;
  a.size = sizeof a;
  a.bp_type = HW_BREAKPOINT_RW;
  a.bp_addr = addr;
  a.bp_len = len;
  a.sample_period = 1;
  a.disabled = disabled ? 1 : 0;
  a.exclude_kernel = 1;
  a.exclude_hv = 1;
  a.remove_on_exec = 1;
  a.sigtrap = 1;
  a.sig_data = sig_tag | reg;
  return a;
}

int open_breakpoint(std::uintptr_t addr, unsigned len, std::size_t reg) noexcept {
  perf_event_attr a = breakpoint_attr(addr, len, reg, true);
  return static_cast<int>(::syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC));
}

/// Points debug register `reg` of this thread at [addr, addr+len) and enables it.
bool program_register(thread_watch& t, std::size_t reg, std::uintptr_t addr,
                      unsigned len) noexcept {
  debug_register& s = t.registers[reg];
  if (s.fd >= 0) {
    perf_event_attr a = breakpoint_attr(addr, len, reg, false);
    if (::ioctl(s.fd, PERF_EVENT_IOC_MODIFY_ATTRIBUTES, &a) == 0) {
      s.enabled = true;
      return true;
    }
    ::close(s.fd);  // the kernel would not move it: open a fresh one
    s.fd = -1;
  }
  s.fd = open_breakpoint(addr, len, reg);
  if (s.fd < 0) return false;
  if (::ioctl(s.fd, PERF_EVENT_IOC_ENABLE, 0) != 0) return false;
  s.enabled = true;
  return true;
}

unsigned watch_length(std::uintptr_t addr, std::size_t remaining) noexcept {
  for (unsigned len : {8U, 4U, 2U, 1U}) {
    if (len <= remaining && addr % len == 0) return len;
  }
  return 1;
}

// ---- the handler ---------------------------------------------------------------------------

void chain(int sig, siginfo_t* si, void* uc) {
  const struct sigaction& prev = previous_action_;
  if ((prev.sa_flags & SA_SIGINFO) != 0 && prev.sa_sigaction != nullptr) {
    prev.sa_sigaction(sig, si, uc);
  } else if (prev.sa_handler == SIG_IGN) {
    return;
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != nullptr) {
    prev.sa_handler(sig);
  } else {
    ::signal(sig, SIG_DFL);  // a trap nobody handles: die as if we were not here
    ::raise(sig);
  }
}

void on_sigtrap(int sig, siginfo_t* si, void* ucv) {
  int saved_errno = errno;
  thread_watch* t = current_watch;
  auto* uc = static_cast<ucontext_t*>(ucv);
  bool ours = false;
  if (si->si_code == TRAP_PERF && (perf_data(si) & sig_tag_mask) == sig_tag) {
    // Ours even when it arrives outside a task (it should not): never
    // chained, so it cannot reach a default action that kills the process.
    ours = true;
    if (t != nullptr && t->active) on_hardware_hit(*t, perf_data(si) & 0xff, uc);
  }
#if defined(__x86_64__)
  if (t != nullptr && t->active && t->stepping && si->si_code == TRAP_TRACE &&
      backend_.load(std::memory_order_relaxed) == backend::single_step) {
    ours = true;
    on_step(*t, uc);
  }
#endif
  errno = saved_errno;
  if (!ours) chain(sig, si, ucv);
}

bool handler_installed_ = false;  // guarded by the monitor's lock (install_watchpoints)

[[maybe_unused]] bool install_handler(std::string& why) {
  struct sigaction current {};
  ::sigaction(SIGTRAP, nullptr, &current);
  bool ours = (current.sa_flags & SA_SIGINFO) != 0 && current.sa_sigaction == on_sigtrap;
  if (handler_installed_ && ours)
    return true;  // installing over ourselves would chain to ourselves
  struct sigaction sa {};
  sa.sa_sigaction = on_sigtrap;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGTRAP, &sa, &previous_action_) != 0) {
    why = std::string("cannot install a SIGTRAP handler: ") + std::strerror(errno);
    return false;
  }
  handler_installed_ = true;
  return true;
}

[[maybe_unused]] void remove_handler() {
  if (handler_installed_) ::sigaction(SIGTRAP, &previous_action_, nullptr);
  handler_installed_ = false;
}

std::string paranoid_level() {
  std::ifstream in("/proc/sys/kernel/perf_event_paranoid");
  std::string level;
  in >> level;
  return level.empty() ? "unknown" : level;
}

/// True when /proc/self/status says a seccomp filter is installed (mode 2).
bool under_seccomp_filter() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("Seccomp:")) return line.find('2') != std::string::npos;
  }
  return false;
}

constinit thread_local long probe_target = 0;

[[maybe_unused]] bool probe_hardware(std::string& why) {
  int fd = open_breakpoint(reinterpret_cast<std::uintptr_t>(&probe_target), sizeof(long), 0);
  if (fd < 0) {
    int err = errno;
    std::string cause;
    if (err == EINVAL) {
      cause = "; the kernel may predate Linux 5.13's synchronous perf SIGTRAP";
    } else if ((err == EPERM || err == EACCES) && under_seccomp_filter()) {
      cause =
          "; this process runs under a seccomp filter, as in a container whose profile "
          "refuses perf_event_open (Docker's default does)";
    } else if (err == EPERM || err == EACCES) {
      cause = "; kernel.perf_event_paranoid=" + paranoid_level() +
              " (3 or more refuses it to processes without CAP_PERFMON)";
    } else {
      cause = "; a debugger may hold the debug registers";
    }
    why = "perf_event_open refused a hardware breakpoint (" + std::string(std::strerror(err)) +
          cause + ")";
    return false;
  }
  ::close(fd);
  backend_.store(backend::hardware);
  // Twice: the first arm opens the descriptor, the second moves it with
  // PERF_EVENT_IOC_MODIFY_ATTRIBUTES, the path every later task takes.
  for (int round = 0; round < 2; ++round) {
    unsigned char before[sizeof(long)];
    std::memcpy(before, &probe_target, sizeof before);
    watch_request r{0, reinterpret_cast<unsigned char*>(&probe_target), sizeof(long), before};
    if (arm_watchpoints(&r, 1) != 1) {
      disarm_watchpoints(nullptr, 0);
      backend_.store(backend::none);
      why = "perf_event_open accepted a hardware breakpoint but it could not be enabled or moved";
      return false;
    }
    long seen = *static_cast<volatile long*>(&probe_target);
    (void)seen;
    watch_hit hit;
    if (disarm_watchpoints(&hit, 1) != 1) {
      backend_.store(backend::none);
      why =
          "hardware breakpoints are accepted but never fire on this machine (a virtual machine "
          "that does not pass debug registers through?)";
      return false;
    }
  }
  return true;
}

}  // namespace

bool install_watchpoints(watch_mode mode, std::string& why) {
  backend_.store(backend::none);
  void* prime[1];
  ::backtrace(prime, 1);  // loads the unwinder now, not inside the handler
  if (mode == watch_mode::off) {
    why = "watchpoints forced off (CTXPOOL_PLAIN_TLS_WATCH=off or force_watch_mode)";
    return false;
  }
#if defined(CTXPOOL_PLAIN_TLS_TSAN)
  why = "ThreadSanitizer delivers signals late, so a watchpoint trap cannot name the access";
  return false;
#else
  if (mode == watch_mode::single_step) {
#if defined(__x86_64__)
    if (!install_handler(why)) return false;
    backend_.store(backend::single_step);
    return true;
#else
    why = "single-step watching exists only on x86-64";
    return false;
#endif
  }
  if (hw_registers == 0) {
    why = "no hardware watchpoints on this architecture";
    return false;
  }
  if (!install_handler(why)) return false;
  if (mode == watch_mode::hardware_unprobed) {
    int fd = open_breakpoint(reinterpret_cast<std::uintptr_t>(&probe_target), sizeof(long), 0);
    if (fd < 0) {
      why = std::string("perf_event_open refused a hardware breakpoint (") + std::strerror(errno) +
            ")";
      remove_handler();
      return false;
    }
    ::close(fd);
    backend_.store(backend::hardware);
    return true;
  }
  // Automatic is hardware here: single-stepping costs a trap per instruction
  // and is never chosen for the user (monitor_linux.cpp picks the watcher).
  if (!probe_hardware(why)) {
    remove_handler();
    return false;
  }
  return true;
#endif
}

std::uint64_t single_step_budget_misses() noexcept {
  return budget_misses_.load(std::memory_order_relaxed);
}

std::size_t watch_registers() noexcept {
  switch (backend_.load(std::memory_order_relaxed)) {
    case backend::hardware: return hw_registers;
    case backend::single_step: return max_watched_per_task;
    default: return 0;
  }
}

std::size_t registers_for(std::size_t size) noexcept {
  if (backend_.load(std::memory_order_relaxed) == backend::single_step) return 1;
  return size > 8 ? 2 : 1;
}

std::size_t arm_watchpoints(const watch_request* requests, std::size_t n) noexcept {
  backend b = backend_.load(std::memory_order_relaxed);
  if (b == backend::none || n == 0) return 0;
  thread_watch* tp = nullptr;
  try {
    tp = &this_thread_watch();
  } catch (...) {
    return 0;
  }
  thread_watch& t = *tp;
  t.count = 0;
  if (b == backend::hardware) {
    t.active = 1;  // before any register is live: a trap must find the state ready
    std::size_t reg = 0;
    for (std::size_t i = 0; i < n && t.count < max_watched_per_task; ++i) {
      const watch_request& req = requests[i];
      std::size_t need = req.size > 8 ? 2 : 1;
      if (reg + need > hw_registers) break;
      auto r = static_cast<std::uint32_t>(t.count);
      t.requests[r] = req;
      t.hit[r] = 0;
      bool ok = true;
      std::size_t covered = 0;
      for (std::size_t k = 0; k < need && ok; ++k) {
        auto addr = reinterpret_cast<std::uintptr_t>(req.addr) + covered;
        unsigned len = watch_length(addr, req.size - covered);
        t.registers[reg].request = r;
        ok = program_register(t, reg, addr, len);
        covered += len;
        ++reg;
      }
      if (!ok) {
        // Half-armed: silence what was programmed for it, so that a trap the
        // handler would not count cannot repeat on every access.
        for (debug_register& s : t.registers) {
          if (s.enabled && s.request == r) {
            ::ioctl(s.fd, PERF_EVENT_IOC_DISABLE, 0);
            s.enabled = false;
          }
        }
        break;
      }
      ++t.count;
    }
    return t.count;
  }
#if defined(__x86_64__)
  if (b == backend::single_step) return arm_single_step(t, requests, n);
#endif
  return 0;
}

std::size_t disarm_watchpoints(watch_hit* out, std::size_t capacity) noexcept {
  thread_watch* tp = current_watch;
  if (tp == nullptr || !tp->active) return 0;
  thread_watch& t = *tp;
#if defined(__x86_64__)
  if (t.stepping) set_trap_flag(false);
  t.stepping = 0;
  if (t.steps_left == 0) {
    std::uint64_t unseen = 0;
    for (std::size_t r = 0; r < t.count; ++r) unseen += t.hit[r] ? 0U : 1U;
    if (unseen > 0) budget_misses_.fetch_add(unseen, std::memory_order_relaxed);
  }
#endif
  for (debug_register& s : t.registers) {
    if (s.enabled) {
      ::ioctl(s.fd, PERF_EVENT_IOC_DISABLE, 0);
      s.enabled = false;
    }
  }
  t.active = 0;
  std::size_t hits = 0;
  for (std::size_t r = 0; r < t.count && hits < capacity; ++r) {
    if (!t.hit[r]) continue;
    watch_hit& h = out[hits++];
    h = {t.requests[r].var, t.pc_after[r], t.insn_pc[r], t.changed[r], {},
         t.caller_count[r], false};
#if defined(__x86_64__)
    h.stored_after_read = t.stored_after_read[r];
#endif
    for (std::size_t i = 0; i < t.caller_count[r]; ++i) h.callers[i] = t.callers[r][i];
  }
  t.count = 0;
  return hits;
}

}  // namespace ctxpool::diagnostics::detail::plain_tls
