// Keeps a single-threaded benchmark program on the CPU it started on.
// (A row that needs threads on every CPU makes them in an any_cpu_scope.)
//
// Its rows are compared as ratios (get() over a raw thread_local read, set +
// reset over an atomic increment), so both rows must run on the same CPU.
// The CPUs of one machine need not be alike (docs/performance-history.md has
// the 2-vCPU VMs where one ran the same code 1.6 times slower), and a program
// moved between two such CPUs mid-run compares rows of two machines. The CPU
// is the one the kernel started the program on, not a chosen one, so a run on
// the slower CPU shows its own ratios.
#pragma once

#if defined(__linux__)
#include <sched.h>
#endif

namespace bench {

#if defined(__linux__)
/// The CPUs the program may run on, as it started (before any pin).
inline const cpu_set_t& cpus_at_start() noexcept {
  static const cpu_set_t set = [] {
    cpu_set_t s;
    CPU_ZERO(&s);
    if (sched_getaffinity(0, sizeof(s), &s) != 0) {
      for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) CPU_SET(cpu, &s);
    }
    return s;
  }();
  return set;
}
#endif

inline bool stay_on_this_cpu() noexcept {
#if defined(__linux__)
  (void)cpus_at_start();  // remembered before the pin narrows it
  const int cpu = sched_getcpu();
  if (cpu < 0) return false;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
#else
  return false;
#endif
}

/// Pins the main thread before main() runs any benchmark.
inline const bool pinned_to_start_cpu = stay_on_this_cpu();

/// Within its scope the calling thread may run on every CPU it started
/// with again. A thread starts with its creator's CPU mask, so a pool made
/// in this scope gets workers the kernel may place anywhere, instead of all
/// sharing the pinned CPU with the thread that feeds them.
class any_cpu_scope {
 public:
  any_cpu_scope() noexcept {
#if defined(__linux__)
    restore_ = sched_getaffinity(0, sizeof(pinned_), &pinned_) == 0;
    sched_setaffinity(0, sizeof(cpu_set_t), &cpus_at_start());
#endif
  }
  ~any_cpu_scope() {
#if defined(__linux__)
    if (restore_) sched_setaffinity(0, sizeof(pinned_), &pinned_);
#endif
  }
  any_cpu_scope(const any_cpu_scope&) = delete;
  any_cpu_scope& operator=(const any_cpu_scope&) = delete;

 private:
#if defined(__linux__)
  cpu_set_t pinned_;
  bool restore_ = false;
#endif
};

}  // namespace bench
