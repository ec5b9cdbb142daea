// Fork-join side by side: ctxpool::task_group and ctxpool::parallel_for on a
// pool of 2 workers against oneTBB's task_group and tbb::parallel_for in an
// arena of 2 threads (the waiter is one of them, as bench/peers.hpp sets TBB
// up for pool_bench). BS::thread_pool's loop helper would be the third peer,
// but it is not packaged in Debian and is not vendored here.
//
// Workloads (items per second of real time; ratios between rows of one run
// are direct):
//   FJ1 fan_out_in   a group runs 64 tasks of ~200 ns and waits (pool_bench's W3)
//   FJ2 recursive    a binary tree 16 levels deep: each node is a group that
//                    runs its two children and waits (65,535 tasks)
//   FJ3 parallel_for 10^6 indices, a few arithmetic operations each
//
//   fork_join_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <ctxpool/task_group.hpp>

#include "peers.hpp"

#if CTXPOOL_BENCH_HAVE_TBB
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#endif

namespace {

const double min_time = [] {
  const char* text = std::getenv("CTXPOOL_BENCH_MIN_TIME");
  const double seconds = text != nullptr ? std::atof(text) : 0.0;
  return seconds > 0 ? seconds : 0.2;
}();

constexpr int fan = 64;
constexpr int levels = 16;
constexpr int tree_tasks = (1 << levels) - 1;
constexpr std::size_t loop_size = 1'000'000;

inline std::uint32_t element_work(std::size_t i) {
  auto x = static_cast<std::uint32_t>(i);
  x ^= x >> 7;
  x *= 2654435761u;
  return x ^ (x >> 13);
}

// ---- ctxpool -------------------------------------------------------------------

void fan_out_in_ctxpool(benchmark::State& state) {
  ctxpool::thread_pool pool{bench::workers};
  std::array<std::uint32_t, fan> results{};
  for (auto _ : state) {
    ctxpool::task_group group{pool};
    for (int i = 0; i < fan; ++i) {
      group.run([&results, i] { results[i] = bench::small_work(static_cast<std::uint32_t>(i)); });
    }
    group.wait();
    benchmark::DoNotOptimize(results.data());
  }
  state.SetItemsProcessed(state.iterations() * fan);
}

void tree_ctxpool(ctxpool::thread_pool& pool, int level) {
  if (level + 1 >= levels) return;
  ctxpool::task_group group{pool};
  group.run([&pool, level] { tree_ctxpool(pool, level + 1); });
  group.run([&pool, level] { tree_ctxpool(pool, level + 1); });
  group.wait();
}

void recursive_ctxpool(benchmark::State& state) {
  ctxpool::thread_pool pool{bench::workers};
  for (auto _ : state) tree_ctxpool(pool, 0);
  state.SetItemsProcessed(state.iterations() * tree_tasks);
}

void parallel_for_ctxpool(benchmark::State& state) {
  ctxpool::thread_pool pool{bench::workers};
  std::vector<std::uint32_t> out(loop_size);
  for (auto _ : state) {
    ctxpool::parallel_for(pool, std::size_t{0}, loop_size,
                          [&out](std::size_t i) { out[i] = element_work(i); });
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(loop_size));
}

// ---- oneTBB --------------------------------------------------------------------

#if CTXPOOL_BENCH_HAVE_TBB
struct tbb_arena {
  tbb::global_control parallelism{tbb::global_control::max_allowed_parallelism,
                                  static_cast<std::size_t>(bench::workers) + 1};
  tbb::task_arena arena{bench::workers};
  tbb_arena() { arena.initialize(); }
};

void fan_out_in_tbb(benchmark::State& state) {
  tbb_arena tbb;
  std::array<std::uint32_t, fan> results{};
  for (auto _ : state) {
    tbb.arena.execute([&] {
      tbb::task_group group;
      for (int i = 0; i < fan; ++i) {
        group.run([&results, i] { results[i] = bench::small_work(static_cast<std::uint32_t>(i)); });
      }
      group.wait();
    });
    benchmark::DoNotOptimize(results.data());
  }
  state.SetItemsProcessed(state.iterations() * fan);
}

void tree_tbb(int level) {
  if (level + 1 >= levels) return;
  tbb::task_group group;
  group.run([level] { tree_tbb(level + 1); });
  group.run([level] { tree_tbb(level + 1); });
  group.wait();
}

void recursive_tbb(benchmark::State& state) {
  tbb_arena tbb;
  for (auto _ : state) tbb.arena.execute([] { tree_tbb(0); });
  state.SetItemsProcessed(state.iterations() * tree_tasks);
}

void parallel_for_tbb(benchmark::State& state) {
  tbb_arena tbb;
  std::vector<std::uint32_t> out(loop_size);
  for (auto _ : state) {
    tbb.arena.execute([&] {
      tbb::parallel_for(std::size_t{0}, loop_size,
                        [&out](std::size_t i) { out[i] = element_work(i); });
    });
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(loop_size));
}
#endif

void register_all() {
  auto add = [](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)->UseRealTime()->MinTime(min_time);
  };
  add("FJ1_fan_out_in/ctxpool_task_group", fan_out_in_ctxpool);
  add("FJ2_recursive/ctxpool_task_group", recursive_ctxpool);
  add("FJ3_parallel_for/ctxpool_parallel_for", parallel_for_ctxpool);
#if CTXPOOL_BENCH_HAVE_TBB
  add("FJ1_fan_out_in/tbb_task_group", fan_out_in_tbb);
  add("FJ2_recursive/tbb_task_group", recursive_tbb);
  add("FJ3_parallel_for/tbb_parallel_for", parallel_for_tbb);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
