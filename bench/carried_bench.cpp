// What a carried thread_local costs (see <ctxpool/carried_thread_local.hpp>):
// a pool task's propagation (capture on submit, fresh context on the worker)
// with 0, 1 and 4 plain thread_locals registered, beside the same with a
// context variable only. Registrations are permanent, so the rows run in
// order of the count and live in a program of their own: context_bench's
// rows are the zero-registration figures of the same code.
#include <ctxpool/carried_thread_local.hpp>
#include <ctxpool/context.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

namespace {

constexpr double min_time = 0.2;

ctxpool::context_var<int> int_var{"bench_int"};

thread_local std::uint64_t carried_values[4] = {};
thread_local std::string carried_string;

int registered = 0;

template <int I>
void register_one() {
  ctxpool::carry_thread_local("carried_values",
                              []() -> std::uint64_t& { return carried_values[I]; });
}

void register_up_to(int count) {
  constexpr void (*registrations[])() = {register_one<0>, register_one<1>, register_one<2>,
                                         register_one<3>};
  for (; registered < count; ++registered) registrations[registered]();
}

// Args: how many std::uint64_t thread_locals are carried.
void BM_capture_and_enter_carried(benchmark::State& state) {
  register_up_to(static_cast<int>(state.range(0)));
  ctxpool::context ctx;
  ctx.run([&] {
    auto tok = int_var.set(1);
    for (auto _ : state) {
      auto snapshot = ctxpool::detail::captured_context::capture();
      ctxpool::detail::fresh_context_scope scope(std::move(snapshot), false);
      benchmark::DoNotOptimize(int_var.get());
    }
  });
  state.counters["carried"] = static_cast<double>(registered);
}
BENCHMARK(BM_capture_and_enter_carried)->Arg(0)->Arg(1)->Arg(4)->MinTime(min_time);

// One more, a std::string with a value too long for the small-string buffer:
// what copying the value adds.
void BM_capture_and_enter_carried_string(benchmark::State& state) {
  register_up_to(4);
  ctxpool::carry_thread_local("carried_string", []() -> std::string& { return carried_string; });
  carried_string = "tenant-0123456789-0123456789-0123456789";
  ctxpool::context ctx;
  ctx.run([&] {
    auto tok = int_var.set(1);
    for (auto _ : state) {
      auto snapshot = ctxpool::detail::captured_context::capture();
      ctxpool::detail::fresh_context_scope scope(std::move(snapshot), false);
      benchmark::DoNotOptimize(int_var.get());
    }
  });
  state.counters["carried"] = 5;
}
BENCHMARK(BM_capture_and_enter_carried_string)->Iterations(200000);

}  // namespace

BENCHMARK_MAIN();
