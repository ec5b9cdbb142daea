// The residue CI build's cost (ctxpool_enable_residue_instrumentation), side
// by side in one run: the same task code compiled as is and instrumented
// (plain_tls_workload.cpp, plain_tls_many_lib.cpp), run
//  - uninstrumented: the release build, detection off;
//  - instrumented, off: the CI build with CTXPOOL_DIAGNOSTICS unset (every
//    load and store calls a callback that finds no task armed);
//  - instrumented, residue: the monitor's task_begin/task_end around each
//    task, first accesses watched by the callbacks, a dirty variable present.
// Tasks of about 1,000, 15,000 and 200,000 instructions, and a task that
// touches one of 400 plain thread_locals of a shared library. Ratios:
// bench/report.py, or divide the rows (target: residue <= 3x instrumented off).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "plain_tls/monitor.hpp"
#include "same_cpu.hpp"  // its rows are compared as ratios: one CPU for all of them

namespace plain_build {
std::uint64_t run_task(const unsigned char* data, std::size_t instructions);
void leave_token_dirty();
long touch(std::size_t i);
}  // namespace plain_build
namespace instrumented_build {
std::uint64_t run_task(const unsigned char* data, std::size_t instructions);
void leave_token_dirty();
long touch(std::size_t i);
}  // namespace instrumented_build

namespace {

namespace pt = ctxpool::diagnostics::detail::plain_tls;

const std::vector<unsigned char>& buffer() {
  static const std::vector<unsigned char> data(200000 / 5 + 64, 0x5a);
  return data;
}

/// The instrumented watcher, with the tokens and counters left dirty once so
/// that every later task watches them.
void start_residue() {
  static const bool started = [] {
    pt::force_watch_mode(pt::watch_mode::instrumented);
    const pt::status st = pt::start([](std::string_view) { return false; });
    if (st.how != pt::watcher::instrumented) std::abort();
    pt::task_begin();
    instrumented_build::leave_token_dirty();
    (void)instrumented_build::run_task(buffer().data(), 100);
    (void)pt::task_end();
    return true;
  }();
  (void)started;
}

void uninstrumented(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(plain_build::run_task(buffer().data(), n));
}

void instrumented_off(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(instrumented_build::run_task(buffer().data(), n));
}

void instrumented_residue(benchmark::State& state) {
  start_residue();
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    pt::task_begin();
    benchmark::DoNotOptimize(instrumented_build::run_task(buffer().data(), n));
    benchmark::DoNotOptimize(pt::task_end());
  }
  state.counters["variables"] = pt::variable_count();
  state.counters["watched"] = pt::stats().variables_watched;
}

// A task of about 1,000 instructions that touches one of the library's 400.
void many_uninstrumented(benchmark::State& state) {
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(plain_build::run_task(buffer().data(), 1000));
    benchmark::DoNotOptimize(plain_build::touch(i++));
  }
}

void many_instrumented_off(benchmark::State& state) {
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(instrumented_build::run_task(buffer().data(), 1000));
    benchmark::DoNotOptimize(instrumented_build::touch(i++));
  }
}

void many_instrumented_residue(benchmark::State& state) {
  start_residue();
  std::size_t i = 0;
  for (auto _ : state) {
    pt::task_begin();
    benchmark::DoNotOptimize(instrumented_build::run_task(buffer().data(), 1000));
    benchmark::DoNotOptimize(instrumented_build::touch(i++));
    benchmark::DoNotOptimize(pt::task_end());
  }
  state.counters["variables"] = pt::variable_count();
  state.counters["watched"] = pt::stats().variables_watched;
}

}  // namespace

BENCHMARK(uninstrumented)->Arg(1000)->Arg(15000)->Arg(200000);
BENCHMARK(instrumented_off)->Arg(1000)->Arg(15000)->Arg(200000);
BENCHMARK(instrumented_residue)->Arg(1000)->Arg(15000)->Arg(200000);
BENCHMARK(many_uninstrumented);
BENCHMARK(many_instrumented_off);
BENCHMARK(many_instrumented_residue);

BENCHMARK_MAIN();
