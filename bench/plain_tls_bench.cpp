// Per-task cost of the plain thread_local platform code (diagnostics/src/
// plain_tls), measured on its own, without a pool: task_begin + task_end
//  - idle: nothing left dirty yet (snapshot and diff of the program's own
//    thread_locals; target <= 1 us),
//  - armed, not hit: one dirty variable watched, the task does not touch it
//    (target <= 5 us with hardware watchpoints),
//  - per trap: the task reads the watched variable (a debug trap and its
//    signal handler; docs/performance-history.md has a VM's figure),
// next to an empty loop. Modes: 1 hardware, 4 hardware without the firing
// probe (the arm/disarm syscalls, where debug registers do not fire), 2
// single step. The hardware cases report an error row (with the start-up
// notice) where the machine has no working watchpoints.
#include <benchmark/benchmark.h>

#include <string>

#include "plain_tls/monitor.hpp"
#include "same_cpu.hpp"

// A handler's worth of thread_locals, as a program would have (external
// linkage, so that the compiler keeps each access inside its task).
thread_local std::string auth_token;
thread_local std::string tenant;
thread_local int depth = 0;
thread_local long counters[8] = {};
thread_local double last_latency = 0;

namespace {

namespace pt = ctxpool::diagnostics::detail::plain_tls;

pt::status start_in(pt::watch_mode mode) {
  pt::force_watch_mode(mode);
  return pt::start([](std::string_view) { return false; });
}

/// Leaves auth_token dirty once so that every later task watches it.
void leave_token_dirty() {
  pt::task_begin();
  auth_token = std::string(40, 'x') + std::to_string(depth++);
  (void)pt::task_end();
}

void empty_loop(benchmark::State& state) {
  for (auto _ : state) benchmark::ClobberMemory();
}

void idle_task(benchmark::State& state) {
  start_in(pt::watch_mode::off);
  for (auto _ : state) {
    pt::task_begin();
    benchmark::DoNotOptimize(pt::task_end());
  }
  state.counters["variables"] = pt::variable_count();
  tenant = "t";
  counters[depth & 7] += 1;
  last_latency += 1.0;
}

void armed_not_hit(benchmark::State& state) {
  auto mode = static_cast<pt::watch_mode>(state.range(0));
  pt::status st = start_in(mode);
  if (!st.watchpoints) {
    state.SkipWithError(st.notice.c_str());
    return;
  }
  leave_token_dirty();
  for (auto _ : state) {
    pt::task_begin();
    benchmark::DoNotOptimize(pt::task_end());
  }
  state.counters["traps"] = static_cast<double>(pt::stats().traps);
}

void per_trap(benchmark::State& state) {
  auto mode = static_cast<pt::watch_mode>(state.range(0));
  pt::status st = start_in(mode);
  if (!st.watchpoints) {
    state.SkipWithError(st.notice.c_str());
    return;
  }
  leave_token_dirty();
  std::uint64_t traps_before = pt::stats().traps;
  for (auto _ : state) {
    pt::task_begin();
    // A real load: DoNotOptimize may hand the asm the memory operand unread.
    volatile std::size_t size = auth_token.size();
    (void)size;
    benchmark::DoNotOptimize(pt::task_end());
  }
  state.counters["traps_per_task"] = static_cast<double>(pt::stats().traps - traps_before) /
                                     static_cast<double>(state.iterations());
}

}  // namespace

BENCHMARK(empty_loop);
BENCHMARK(idle_task);
BENCHMARK(armed_not_hit)
    ->ArgName("mode")
    ->Arg(static_cast<int>(pt::watch_mode::hardware))
    ->Arg(static_cast<int>(pt::watch_mode::hardware_unprobed))
    ->Arg(static_cast<int>(pt::watch_mode::single_step));
BENCHMARK(per_trap)
    ->ArgName("mode")
    ->Arg(static_cast<int>(pt::watch_mode::hardware))
    ->Arg(static_cast<int>(pt::watch_mode::single_step));

BENCHMARK_MAIN();
