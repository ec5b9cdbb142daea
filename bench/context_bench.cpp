// Context operations side by side with their natural peers in one run: a raw
// thread_local read (for get) and an uncontended atomic increment (for
// set + reset, copy_context and run), the yardsticks the targets in the
// README's Performance tables are stated in. Ratios between rows of one run
// are what the README reports.
#include <ctxpool/context.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "same_cpu.hpp"

namespace {

// Nanosecond operations: 0.2 s gives tens of millions of iterations each.
constexpr double min_time = 0.2;

thread_local int raw_value = 42;

ctxpool::context_var<int> int_var{"bench_int"};
ctxpool::context_var<int> default_var{"bench_default", 7};

// Copied out so every iteration loads it (DoNotOptimize's memory clobber
// forbids hoisting the load), as get() has to produce a value.
void BM_raw_thread_local_read(benchmark::State& state) {
  for (auto _ : state) {
    int value = raw_value;
    benchmark::DoNotOptimize(value);
  }
}
BENCHMARK(BM_raw_thread_local_read)->MinTime(min_time);

std::atomic<long> counter{0};

void BM_atomic_increment(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(counter.fetch_add(1));
  }
}
BENCHMARK(BM_atomic_increment)->MinTime(min_time);

void BM_context_var_get(benchmark::State& state) {
  ctxpool::context ctx;
  ctx.run([&] {
    auto tok = int_var.set(42);
    for (auto _ : state) {
      benchmark::DoNotOptimize(int_var.get());
    }
  });
}
BENCHMARK(BM_context_var_get)->MinTime(min_time);

void BM_context_var_get_default(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(default_var.get());
  }
}
BENCHMARK(BM_context_var_get_default)->MinTime(min_time);

// The first get after a context switch misses the cache and walks the map.
void BM_context_var_get_uncached(benchmark::State& state) {
  ctxpool::context ctx;
  ctx.run([&] {
    auto tok = int_var.set(42);
    for (auto _ : state) {
      ctxpool::detail::bump_epoch(ctxpool::detail::this_thread_state());
      benchmark::DoNotOptimize(int_var.get());
    }
  });
}
BENCHMARK(BM_context_var_get_uncached)->MinTime(min_time);

void BM_context_var_set_reset(benchmark::State& state) {
  ctxpool::context ctx;
  ctx.run([&] {
    for (auto _ : state) {
      auto tok = int_var.set(1);
      int_var.reset(tok);
    }
  });
}
BENCHMARK(BM_context_var_set_reset)->MinTime(min_time);

// The same with the variable already set (the token then holds an old value).
void BM_context_var_set_reset_overwrite(benchmark::State& state) {
  ctxpool::context ctx;
  ctx.run([&] {
    auto base = int_var.set(0);
    for (auto _ : state) {
      auto tok = int_var.set(1);
      int_var.reset(tok);
    }
  });
}
BENCHMARK(BM_context_var_set_reset_overwrite)->MinTime(min_time);

// copy_context with N variables set: must not depend on N.
void BM_copy_context(benchmark::State& state) {
  const auto count = static_cast<std::size_t>(state.range(0));
  std::vector<std::unique_ptr<ctxpool::context_var<int>>> vars;
  ctxpool::context ctx;
  ctx.run([&] {
    for (std::size_t i = 0; i < count; ++i) {
      vars.push_back(std::make_unique<ctxpool::context_var<int>>("v" + std::to_string(i)));
      (void)vars.back()->set(static_cast<int>(i));
    }
    for (auto _ : state) {
      benchmark::DoNotOptimize(ctxpool::copy_context());
    }
  });
  state.counters["vars"] = static_cast<double>(count);
}
BENCHMARK(BM_copy_context)->Arg(1)->Arg(10000)->MinTime(min_time);

void BM_context_run_empty(benchmark::State& state) {
  ctxpool::context ctx;
  for (auto _ : state) {
    ctx.run([] {});
  }
}
BENCHMARK(BM_context_run_empty)->MinTime(min_time);

// What a pool pays per task for propagation: capture on submit, fresh context on the worker.
void BM_capture_and_enter(benchmark::State& state) {
  ctxpool::context ctx;
  ctx.run([&] {
    auto tok = int_var.set(1);
    for (auto _ : state) {
      auto snapshot = ctxpool::detail::captured_context::capture();
      ctxpool::detail::fresh_context_scope scope(std::move(snapshot), false);
      benchmark::DoNotOptimize(int_var.get());
    }
  });
}
BENCHMARK(BM_capture_and_enter)->MinTime(min_time);

}  // namespace

BENCHMARK_MAIN();
