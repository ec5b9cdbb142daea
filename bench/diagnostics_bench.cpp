// Per-task cost of residue detection: the same task loop with detection off
// and on, side by side in one run. Design target: on <= 3x off; off costs
// nothing beyond the wipe (no observer installed: each hook is one branch).
//
// One "task" is what a pool does around a task, through the hand-written-pool
// API: diagnostics::task_scope (fresh context, slot_wipe_scope, and with
// detection on a task id and begin/end), one thread_local_var write, one read.
// With detection on, the task's first access is tracked and the value it
// leaves is recorded in the process-wide model (a repeat: one atomic
// increment). Plain thread_local checking is off here (thread_locals=0): it
// is measured on its own below, since its cost depends on the platform.
// `pool_post_write_read` does the same through ctxpool::thread_pool (one
// worker, fed in batches from outside), queueing included. The program
// stays on the CPU it starts on (same_cpu.hpp), so that on and off compare
// on one CPU; the pool's worker may run anywhere.
#include <benchmark/benchmark.h>

#include <optional>
#include <string>

#include <ctxpool/diagnostics.hpp>
#include <ctxpool/executor.hpp>
#include <ctxpool/thread_local.hpp>

#include "same_cpu.hpp"

namespace {

namespace diag = ctxpool::diagnostics;

ctxpool::thread_local_var<int> request_id{"request_id"};
ctxpool::thread_local_var<std::string> auth_token{"auth_token"};

void set_detection(bool on, bool thread_locals = false) {
  if (on) {
    diag::options opts;
    opts.exitcode = 0;  // the stale-read benchmark makes findings on purpose
    opts.print = false;
    opts.thread_locals = thread_locals;
    diag::enable(opts);
  } else {
    diag::disable();
  }
  diag::clear_findings();
}

/// The per-task loop: write then read in the same task (the clean case).
void write_read_loop(benchmark::State& state) {
  int i = 0;
  for (auto _ : state) {
    diag::task_scope task;
    request_id.set(++i);
    benchmark::DoNotOptimize(request_id.value());
  }
  set_detection(false);
}

void task_write_read(benchmark::State& state) {
  set_detection(state.range(0) != 0);
  write_read_loop(state);
}

/// The same with a string (an auth token) instead of an int.
void task_write_read_string(benchmark::State& state) {
  set_detection(state.range(0) != 0);
  for (auto _ : state) {
    diag::task_scope task;
    auth_token.set("bearer-abc");
    benchmark::DoNotOptimize(auth_token.value().size());
  }
  set_detection(false);
}

/// A task that only reads, after a task left the slot dirty (a stale read
/// each time with detection on: the cost of a repeat once it has been
/// recorded, counted through the per-thread cache).
void task_stale_read(benchmark::State& state) {
  set_detection(state.range(0) != 0);
  {
    diag::task_scope writer;
    request_id.set(1);
  }
  for (auto _ : state) {
    diag::task_scope task;
    benchmark::DoNotOptimize(request_id.has_value());
  }
  diag::clear_findings();
  set_detection(false);
}

/// The write-and-read task with plain thread_local checking on as well: the
/// per-task snapshot and diff of the program's own thread_locals.
void task_write_read_plain(benchmark::State& state) {
  set_detection(true, state.range(0) != 0);
  write_read_loop(state);
}

/// An empty task: begin/end and the scope alone.
void task_empty(benchmark::State& state) {
  set_detection(state.range(0) != 0);
  for (auto _ : state) {
    diag::task_scope task;
    benchmark::ClobberMemory();
  }
  set_detection(false);
}

/// The same task body on ctxpool::thread_pool: post a batch, wait, per task.
void pool_post_write_read(benchmark::State& state) {
  set_detection(state.range(0) != 0);
  constexpr int batch = 1000;
  {
    std::optional<ctxpool::thread_pool> pool;
    {
      bench::any_cpu_scope anywhere;  // the worker must not inherit the main thread's pin
      pool.emplace(1);                // reads enabled() here
    }
    for (auto _ : state) {
      for (int i = 0; i < batch; ++i) {
        pool->post([i] {
          request_id.set(i);
          benchmark::DoNotOptimize(request_id.value());
        });
      }
      pool->wait();
    }
    pool->join();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  // kIsRate | kInvert gives seconds per task.
  state.counters["s_per_task"] =
      benchmark::Counter(static_cast<double>(state.iterations() * batch),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  set_detection(false);
}

}  // namespace

BENCHMARK(pool_post_write_read)->ArgName("detection")->Arg(0)->Arg(1)->UseRealTime();
BENCHMARK(task_write_read)->ArgName("detection")->Arg(0)->Arg(1);
BENCHMARK(task_write_read_string)->ArgName("detection")->Arg(0)->Arg(1);
BENCHMARK(task_empty)->ArgName("detection")->Arg(0)->Arg(1);
BENCHMARK(task_write_read_plain)->ArgName("thread_locals")->Arg(0)->Arg(1);
BENCHMARK(task_stale_read)->ArgName("detection")->Arg(0)->Arg(1);

BENCHMARK_MAIN();
