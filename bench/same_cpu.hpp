// Keeps a single-threaded benchmark program on the CPU it started on.
//
// Its rows are compared as ratios (get() over a raw thread_local read, set +
// reset over an atomic increment), so both rows must run on the same CPU.
// The CPUs of one machine need not be alike: on the 2-vCPU VMs these numbers
// come from, one vCPU ran the same single-threaded code 1.6 times slower than
// the other (a raw read 0.50 against 0.29 ns, set + reset 33 against 20 ns,
// an atomic increment 6.1 against 5.8 ns), and a program the kernel moved
// between the two after its first rows reported get() at 4.2 times a raw read
// instead of 2. The CPU is the one the kernel started the program on, not a
// chosen one, so a run on the slower CPU shows its own ratios.
#pragma once

#if defined(__linux__)
#include <sched.h>
#endif

namespace bench {

inline bool stay_on_this_cpu() noexcept {
#if defined(__linux__)
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

}  // namespace bench
