// ctxpool's thread_pool side by side with the pools users would pick instead,
// all with 2 workers, in one run: boost::asio::thread_pool, oneTBB (task_group
// run/wait, and task_arena::enqueue for the cross-thread patterns), a
// hand-written std::thread + mutex + condition-variable + std::function pool,
// and std::async (see peers.hpp).
//
// Workloads (names `W<n>_<what>/<peer>/<feed>`; every row counts items per
// second of real time, so ratios between rows of one run are direct):
//   W1 fire_and_forget  10,000 empty tasks posted from one thread, then wait
//   W2 submit_wait      submit one task, wait on its future, repeat
//   W3 fan_out_in       64 tasks of ~200 ns, wait for all, repeat
//   W4 four_producers   4 threads post 2,500 empty tasks each, wait for all
//   W5 recursive        a binary tree of tasks 16 levels deep (65,535 tasks):
//                       each task posts its two children from the worker
//   W6 2us_tasks        1,000 tasks hashing 1 KiB (~2 us each), then wait
// (W7, bytes per queued task, is pool_memory_bench.) `feed` is how the
// submitting thread waits: `latch` blocks, `yield` polls with
// std::this_thread::yield(); compare rows with the same feed. TBB's
// task_group waits with tg.wait() (the waiter runs tasks), so it has no feed.
// std::async runs smaller batches (500 tasks, tree of 10 levels): a thread
// per task.
//
// One-thread reference rows (W1, W3, W5; not in any comparison): ctxpool
// with one worker, and task_group in an arena of one, where the waiter runs
// every task. Every task counts down one shared completion, so two threads
// running tiny tasks pass its line back and forth for each task: one thread
// alone can beat two, and a run where TBB's worker stays asleep and the
// waiter runs the tasks alone shows task_group at its one-thread speed.
//
// Also: W1 through ctxpool's Asio executor and with propagation + wipe off,
// the task bodies run inline (what "200 ns" and "2 us" measure here), the
// per-task price of propagation + wipe, idle submit->start latency, and the
// host's cross-core round trip.
//
//   pool_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <boost/asio/post.hpp>

#include <ctxpool/detail/tuned_pool.hpp>

#include "peers.hpp"

namespace {

using bench::completion;
using bench::feed;

// Seconds per benchmark and repetition; CTXPOOL_BENCH_MIN_TIME overrides it
// (a quick smoke run, or a longer one on a quiet machine).
const double min_time = [] {
  const char* text = std::getenv("CTXPOOL_BENCH_MIN_TIME");
  const double seconds = text != nullptr ? std::atof(text) : 0.0;
  return seconds > 0 ? seconds : 0.2;
}();

constexpr int w1_tasks = 10'000;
constexpr int w3_fan = 64;
constexpr int w4_producers = 4;
constexpr int w4_tasks = 10'000;
constexpr int w5_levels = 16;
constexpr int w5_levels_std_async = 10;
constexpr int w6_tasks = 1'000;

template <class Peer>
int batch_for(int tasks) {
  return std::min(tasks, Peer::max_batch);
}

// ---- W1: empty fire-and-forget from one thread -------------------------------

template <class Peer>
void w1_fire_and_forget(benchmark::State& state, feed how) {
  completion done;  // outlives the pool: the last task's notify may still run
  Peer peer;
  const int tasks = batch_for<Peer>(w1_tasks);
  for (auto _ : state) {
    peer.session([&] {
      done.arm(tasks);
      for (int i = 0; i < tasks; ++i) peer.post([&done] { done.count_down(); });
      peer.wait(done, how);
    });
  }
  state.SetItemsProcessed(state.iterations() * tasks);
}

// The same through asio::post(pool.get_executor()), and with propagation and
// the slot wipe switched off (design: within 10% of the full pool).
void w1_ctxpool_asio_post(benchmark::State& state, feed how) {
  completion done;
  ctxpool::thread_pool pool{bench::workers};
  bench::request_scope scope;
  auto executor = pool.get_executor();
  for (auto _ : state) {
    done.arm(w1_tasks);
    for (int i = 0; i < w1_tasks; ++i) boost::asio::post(executor, [&done] { done.count_down(); });
    done.wait(how);
  }
  state.SetItemsProcessed(state.iterations() * w1_tasks);
}

void w1_ctxpool_bare(benchmark::State& state, feed how) {
  completion done;
  ctxpool::detail::tuned_thread_pool pool{
      ctxpool::thread_pool_options{bench::workers, "ctxpool-", {}},
      ctxpool::detail::pool_tuning{false, false}};
  bench::request_scope scope;
  for (auto _ : state) {
    done.arm(w1_tasks);
    for (int i = 0; i < w1_tasks; ++i) pool.post([&done] { done.count_down(); });
    done.wait(how);
  }
  state.SetItemsProcessed(state.iterations() * w1_tasks);
}

// ---- W2: submit + wait on each future ----------------------------------------

template <class Peer>
void w2_submit_wait(benchmark::State& state, feed how) {
  Peer peer;
  std::int64_t sum = 0;
  int i = 0;
  for (auto _ : state) {
    auto future = peer.submit([i] { return i; });
    bench::wait_future(future, how);
    sum += future.get();
    ++i;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}

// ---- W3: fan-out / fan-in of 64 tasks of ~200 ns ----------------------------

template <class Peer>
void w3_fan_out_in(benchmark::State& state, feed how) {
  completion done;
  std::array<std::uint32_t, w3_fan> results{};
  Peer peer;
  for (auto _ : state) {
    peer.session([&] {
      done.arm(w3_fan);
      for (int i = 0; i < w3_fan; ++i) {
        peer.post([&results, &done, i] {
          results[i] = bench::small_work(static_cast<std::uint32_t>(i));
          done.count_down();
        });
      }
      peer.wait(done, how);
    });
    benchmark::DoNotOptimize(results.data());
  }
  state.SetItemsProcessed(state.iterations() * w3_fan);
}

// ---- W4: four producers into one pool -----------------------------------------

template <class Peer>
void w4_four_producers(benchmark::State& state, feed how) {
  completion done;
  Peer peer;
  bench::producer_team team(w4_producers);
  const int per_producer = batch_for<Peer>(w4_tasks) / w4_producers;
  for (auto _ : state) {
    done.arm(per_producer * w4_producers);
    team.run([&] {
      [[maybe_unused]] auto scope = Peer::producer_scope();
      for (int i = 0; i < per_producer; ++i) peer.post([&done] { done.count_down(); });
    });
    peer.wait(done, how);
    team.wait_idle();
  }
  state.SetItemsProcessed(state.iterations() * per_producer * w4_producers);
}

// ---- W5: recursive tasks, each posting its two children ----------------------

template <class Peer>
struct tree_node {
  Peer* peer;
  completion* done;
  int level;
  int levels;
  void operator()() const {
    if (level + 1 < levels) {
      peer->post(tree_node{peer, done, level + 1, levels});
      peer->post(tree_node{peer, done, level + 1, levels});
    }
    done->count_down();
  }
};

template <class Peer>
void w5_recursive(benchmark::State& state, feed how) {
  completion done;
  Peer peer;
  const int levels = std::is_same_v<Peer, bench::std_async_peer> ? w5_levels_std_async : w5_levels;
  const int tasks = (1 << levels) - 1;
  for (auto _ : state) {
    peer.session([&] {
      done.arm(tasks);
      peer.post(tree_node<Peer>{&peer, &done, 0, levels});
      peer.wait(done, how);
    });
  }
  state.SetItemsProcessed(state.iterations() * tasks);
  state.counters["levels"] = levels;
}

// ---- W6: tasks of ~2 us (hash 1 KiB) ------------------------------------------

const std::array<unsigned char, 1024>& kib_of_data() {
  static const auto data = [] {
    std::array<unsigned char, 1024> bytes{};
    for (std::size_t i = 0; i < bytes.size(); ++i)
      bytes[i] = static_cast<unsigned char>(i * 131 + 7);
    return bytes;
  }();
  return data;
}

template <class Peer>
void w6_2us_tasks(benchmark::State& state, feed how) {
  completion done;
  const auto& data = kib_of_data();
  const int tasks = batch_for<Peer>(w6_tasks);
  std::vector<std::uint64_t> results(static_cast<std::size_t>(tasks));
  Peer peer;
  for (auto _ : state) {
    peer.session([&] {
      done.arm(tasks);
      for (int i = 0; i < tasks; ++i) {
        peer.post([&results, &data, &done, i] {
          results[static_cast<std::size_t>(i)] =
              bench::hash_kib(data, static_cast<std::uint64_t>(i));
          done.count_down();
        });
      }
      peer.wait(done, how);
    });
    benchmark::DoNotOptimize(results.data());
  }
  state.SetItemsProcessed(state.iterations() * tasks);
}

// The task bodies on the calling thread: what W3's and W6's tasks cost alone.
void w3_task_body_inline(benchmark::State& state) {
  std::uint32_t seed = 0;
  for (auto _ : state) benchmark::DoNotOptimize(bench::small_work(seed++));
  state.SetItemsProcessed(state.iterations());
}

void w6_task_body_inline(benchmark::State& state) {
  const auto& data = kib_of_data();
  std::uint64_t seed = 0;
  for (auto _ : state) benchmark::DoNotOptimize(bench::hash_kib(data, seed++));
  state.SetItemsProcessed(state.iterations());
}

// ---- the price of propagation + wipe, per task ---------------------------------

// Tasks run inline on one worker (the executor's execute from a pool thread),
// so no queue or wake-up blurs the figure: the difference between the two
// rows is what propagation and the slot wipe add to each task.
void per_task_cost(benchmark::State& state, bool propagate_and_wipe) {
  ctxpool::detail::tuned_thread_pool pool{
      ctxpool::thread_pool_options{1, "ctxpool-", {}},
      ctxpool::detail::pool_tuning{propagate_and_wipe, propagate_and_wipe}};
  bench::request_scope scope;
  auto executor = pool.get_executor();
  constexpr int tasks = 10'000;
  for (auto _ : state) {
    pool.submit([&executor] {
          for (int i = 0; i < tasks; ++i) executor.execute([] {});
        })
        .get();
    bench::note_progress();
  }
  state.SetItemsProcessed(state.iterations() * tasks);
}

// ---- the host: one cache line passed between two threads --------------------

// Not a pool: two threads taking turns writing one line, the transfer that
// every handoff between threads pays (a task's node, a shared counter). On
// the VMs measured here it changes from run to run (the host moves the
// vCPUs), and the pool rows of tiny tasks move with it, so a run records it.
void cross_core_round_trip(benchmark::State& state) {
  struct alignas(64) line {
    std::atomic<std::uint64_t> turn{0};
  };
  line ball;
  std::atomic<bool> done{false};
  // Odd values are the partner's to answer, with the next even one.
  std::thread partner([&ball, &done] {
    while (!done.load(std::memory_order_relaxed)) {
      const std::uint64_t now = ball.turn.load(std::memory_order_acquire);
      if (now % 2 == 1) ball.turn.store(now + 1, std::memory_order_release);
    }
  });
  constexpr int trips = 1000;
  std::uint64_t next = 1;
  for (auto _ : state) {
    for (int i = 0; i < trips; ++i, next += 2) {
      ball.turn.store(next, std::memory_order_release);
      while (ball.turn.load(std::memory_order_acquire) != next + 1) {
      }
    }
    bench::note_progress();
  }
  done.store(true, std::memory_order_relaxed);
  partner.join();
  state.SetItemsProcessed(state.iterations() * trips);
}

// ---- idle submit -> start latency --------------------------------------------

template <class Peer>
void latency(benchmark::State& state) {
  using clock = std::chrono::steady_clock;
  Peer peer;
  std::vector<double> samples;
  for (auto _ : state) {
    // Let the workers go idle (park) first: this measures a wake-up.
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    std::promise<clock::time_point> started;
    auto future = started.get_future();
    const auto t0 = clock::now();
    peer.post([&started] { started.set_value(clock::now()); });
    const auto t1 = future.get();
    const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
    samples.push_back(ns);
    state.SetIterationTime(ns * 1e-9);
    bench::note_progress();
  }
  std::sort(samples.begin(), samples.end());
  auto at = [&samples](double q) {
    return samples.empty()
               ? 0.0
               : samples[static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1))];
  };
  state.counters["p50_ns"] = at(0.50);
  state.counters["p99_ns"] = at(0.99);
}

// ---- registration --------------------------------------------------------------

using bench_fn = void (*)(benchmark::State&, feed);

void add(const std::string& name, bench_fn fn, feed how) {
  benchmark::RegisterBenchmark(name.c_str(), fn, how)->UseRealTime()->MinTime(min_time);
}

// One workload on every peer: each queueing peer and std::async with both
// feeds, TBB's task_group once (its tg.wait() is the only way it waits).
// `pick(std::type_identity<Peer>{})` names the workload's instance for Peer.
template <bool with_task_group, class Pick>
void add_workload(const std::string& workload, Pick pick) {
  for (feed how : {feed::latch, feed::yield}) {
    const std::string suffix = std::string("/") + bench::feed_name(how);
    add(workload + "/ctxpool" + suffix, pick(std::type_identity<bench::ctxpool_peer>{}), how);
    add(workload + "/handwritten" + suffix, pick(std::type_identity<bench::handwritten_peer>{}),
        how);
    add(workload + "/asio" + suffix, pick(std::type_identity<bench::asio_peer>{}), how);
#if CTXPOOL_BENCH_HAVE_TBB
    add(workload + "/tbb_enqueue" + suffix, pick(std::type_identity<bench::tbb_enqueue_peer>{}),
        how);
#endif
    add(workload + "/std_async" + suffix, pick(std::type_identity<bench::std_async_peer>{}), how);
  }
#if CTXPOOL_BENCH_HAVE_TBB
  if constexpr (with_task_group) {
    add(workload + "/tbb_task_group", pick(std::type_identity<bench::tbb_task_group_peer>{}),
        feed::latch);
  }
#endif
}

// The one-thread reference rows of a workload (see the file comment).
template <class Pick>
void add_one_thread_references(const std::string& workload, Pick pick) {
  add(workload + "/ctxpool_one_worker/latch",
      pick(std::type_identity<bench::basic_ctxpool_peer<1>>{}), feed::latch);
#if CTXPOOL_BENCH_HAVE_TBB
  add(workload + "/tbb_task_group_one_thread",
      pick(std::type_identity<bench::basic_tbb_task_group_peer<1>>{}), feed::latch);
#endif
}

// The instance of workload template `fn` for the peer `pick` is given.
#define CTXPOOL_BENCH_PICK(fn) \
  []<class Peer>(std::type_identity<Peer>) -> bench_fn { return fn<Peer>; }

void register_all() {
  add_workload<true>("W1_fire_and_forget", CTXPOOL_BENCH_PICK(w1_fire_and_forget));
  add("W1_fire_and_forget/ctxpool_asio_post/latch", w1_ctxpool_asio_post, feed::latch);
  add("W1_fire_and_forget/ctxpool_no_propagation_no_wipe/latch", w1_ctxpool_bare, feed::latch);
  // A task_group round trip would run on the waiting thread itself: not cross-thread.
  add_workload<false>("W2_submit_wait", CTXPOOL_BENCH_PICK(w2_submit_wait));
  add_workload<true>("W3_fan_out_in", CTXPOOL_BENCH_PICK(w3_fan_out_in));
  // task_group::run is not meant to be called from several outside threads at once.
  add_workload<false>("W4_four_producers", CTXPOOL_BENCH_PICK(w4_four_producers));
  add_workload<true>("W5_recursive", CTXPOOL_BENCH_PICK(w5_recursive));
  add_workload<true>("W6_2us_tasks", CTXPOOL_BENCH_PICK(w6_2us_tasks));
  add_one_thread_references("W1_fire_and_forget", CTXPOOL_BENCH_PICK(w1_fire_and_forget));
  add_one_thread_references("W3_fan_out_in", CTXPOOL_BENCH_PICK(w3_fan_out_in));
  add_one_thread_references("W5_recursive", CTXPOOL_BENCH_PICK(w5_recursive));

  benchmark::RegisterBenchmark("task_body/W3_200ns_inline", w3_task_body_inline)->MinTime(min_time);
  benchmark::RegisterBenchmark("task_body/W6_2us_inline", w6_task_body_inline)->MinTime(min_time);
  benchmark::RegisterBenchmark("task_cost/with_propagation_and_wipe", per_task_cost, true)
      ->UseRealTime()
      ->MinTime(min_time);
  benchmark::RegisterBenchmark("task_cost/without", per_task_cost, false)
      ->UseRealTime()
      ->MinTime(min_time);

  benchmark::RegisterBenchmark("host/cross_core_round_trip", cross_core_round_trip)
      ->UseRealTime()
      ->MinTime(min_time);

  constexpr int latency_samples = 1000;
  benchmark::RegisterBenchmark("latency/ctxpool", latency<bench::ctxpool_peer>)
      ->UseManualTime()
      ->Iterations(latency_samples);
  benchmark::RegisterBenchmark("latency/handwritten", latency<bench::handwritten_peer>)
      ->UseManualTime()
      ->Iterations(latency_samples);
  benchmark::RegisterBenchmark("latency/asio", latency<bench::asio_peer>)
      ->UseManualTime()
      ->Iterations(latency_samples);
#if CTXPOOL_BENCH_HAVE_TBB
  benchmark::RegisterBenchmark("latency/tbb_enqueue", latency<bench::tbb_enqueue_peer>)
      ->UseManualTime()
      ->Iterations(latency_samples);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  bench::stall_watchdog watchdog{std::chrono::seconds(120)};
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
