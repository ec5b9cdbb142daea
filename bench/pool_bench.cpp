// ctxpool's thread_pool side by side with its peers: raw asio::post on
// asio::thread_pool, a typical hand-written pool (mutex + condition variable +
// std::queue<std::function>), and std::async.
//
// Every throughput benchmark feeds empty (or tiny) tasks to 2 workers from
// one outside thread and counts items per second of real time; compare the
// rows of one run, not absolute numbers across machines. The
// `ctxpool_post_no_propagation_no_wipe` row runs the same workload with
// propagation and the slot wipe switched off; the `task_cost_*` pair prices
// them per task without queueing noise (tasks run inline on one worker).
// Latency rows report p50/p99 (ns) as counters.
//
//   pool_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <ctxpool/context.hpp>
#include <ctxpool/executor.hpp>

namespace asio = boost::asio;

namespace {

constexpr int workers = 2;
constexpr int batch = 10'000;  // tasks per benchmark iteration

ctxpool::context_var<std::string> request_id{"request_id"};

/// The typical hand-written pool that ctxpool replaces.
class handwritten_pool {
 public:
  explicit handwritten_pool(int threads) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] {
        for (;;) {
          std::function<void()> task;
          {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;
            task = std::move(queue_.front());
            queue_.pop();
          }
          task();
        }
      });
    }
  }
  ~handwritten_pool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(std::function<void()> task) {
    {
      std::lock_guard lock(mutex_);
      queue_.push(std::move(task));
    }
    cv_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::queue<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

/// The submitter runs with a request id set, as a request handler would.
struct request_scope {
  ctxpool::token<std::string> token = request_id.set("request-42");
  ~request_scope() { request_id.reset(token); }
};

// ---- empty-task throughput, fed from one outside thread ---------------------

template <class Post>
void run_batches(benchmark::State& state, Post&& post, int tasks = batch) {
  for (auto _ : state) {
    std::latch done(tasks);
    for (int i = 0; i < tasks; ++i) post([&done] { done.count_down(); });
    done.wait();
  }
  state.SetItemsProcessed(state.iterations() * tasks);
}

void ctxpool_post(benchmark::State& state) {
  ctxpool::thread_pool pool{workers};
  request_scope scope;
  run_batches(state, [&pool](auto f) { pool.post(std::move(f)); });
}

void ctxpool_post_no_propagation_no_wipe(benchmark::State& state) {
  ctxpool::thread_pool pool{ctxpool::thread_pool_options{workers, "ctxpool-", {}},
                            ctxpool::detail::pool_tuning{false, false}};
  request_scope scope;
  run_batches(state, [&pool](auto f) { pool.post(std::move(f)); });
}

void ctxpool_submit(benchmark::State& state) {
  ctxpool::thread_pool pool{workers};
  request_scope scope;
  run_batches(state, [&pool](auto f) { (void)pool.submit(std::move(f)); });
}

void ctxpool_asio_post(benchmark::State& state) {
  ctxpool::thread_pool pool{workers};
  request_scope scope;
  auto executor = pool.get_executor();
  run_batches(state, [&executor](auto f) { asio::post(executor, std::move(f)); });
}

void asio_thread_pool_post(benchmark::State& state) {
  asio::thread_pool pool{workers};
  request_scope scope;
  run_batches(state, [&pool](auto f) { asio::post(pool, std::move(f)); });
  pool.join();
}

void handwritten_post(benchmark::State& state) {
  handwritten_pool pool{workers};
  request_scope scope;
  run_batches(state, [&pool](auto f) { pool.post(std::move(f)); });
}

void std_async(benchmark::State& state) {
  // A thread per task: far slower, so a smaller batch keeps the run short.
  constexpr int tasks = 500;
  for (auto _ : state) {
    std::vector<std::future<void>> futures;
    futures.reserve(tasks);
    for (int i = 0; i < tasks; ++i) futures.push_back(std::async(std::launch::async, [] {}));
    for (auto& f : futures) f.get();
  }
  state.SetItemsProcessed(state.iterations() * tasks);
}

// ---- submit with a future, waiting on every future ----------------------------

template <class Submit>
void run_futures(benchmark::State& state, Submit&& submit, int tasks = batch) {
  std::vector<std::future<int>> futures;
  futures.reserve(tasks);
  for (auto _ : state) {
    for (int i = 0; i < tasks; ++i) futures.push_back(submit([i] { return i; }));
    std::int64_t sum = 0;
    for (auto& f : futures) sum += f.get();
    benchmark::DoNotOptimize(sum);
    futures.clear();
  }
  state.SetItemsProcessed(state.iterations() * tasks);
}

void future_ctxpool_submit(benchmark::State& state) {
  ctxpool::thread_pool pool{workers};
  request_scope scope;
  run_futures(state, [&pool](auto f) { return pool.submit(std::move(f)); });
}

void future_asio_thread_pool(benchmark::State& state) {
  asio::thread_pool pool{workers};
  run_futures(state, [&pool](auto f) {
    auto task = std::make_shared<std::packaged_task<int()>>(std::move(f));
    auto future = task->get_future();
    asio::post(pool, [task] { (*task)(); });
    return future;
  });
  pool.join();
}

void future_handwritten(benchmark::State& state) {
  handwritten_pool pool{workers};
  run_futures(state, [&pool](auto f) {
    auto task = std::make_shared<std::packaged_task<int()>>(std::move(f));
    auto future = task->get_future();
    pool.post([task] { (*task)(); });
    return future;
  });
}

void future_std_async(benchmark::State& state) {
  run_futures(state, [](auto f) { return std::async(std::launch::async, std::move(f)); }, 500);
}

// ---- fan-out / fan-in: 64 small tasks, then wait for all ----------------------

constexpr int fan = 64;

int small_work(int seed) {
  int x = seed;
  for (int i = 0; i < 200; ++i) x = x * 1103515245 + 12345;
  return x;
}

template <class Post>
void run_fan(benchmark::State& state, Post&& post) {
  std::vector<int> results(fan);
  for (auto _ : state) {
    std::latch done(fan);
    for (int i = 0; i < fan; ++i) {
      post([&results, &done, i] {
        results[i] = small_work(i);
        done.count_down();
      });
    }
    done.wait();
    benchmark::DoNotOptimize(results.data());
  }
  state.SetItemsProcessed(state.iterations() * fan);
}

void fan_ctxpool(benchmark::State& state) {
  ctxpool::thread_pool pool{workers};
  request_scope scope;
  run_fan(state, [&pool](auto f) { pool.post(std::move(f)); });
}

void fan_asio_thread_pool(benchmark::State& state) {
  asio::thread_pool pool{workers};
  run_fan(state, [&pool](auto f) { asio::post(pool, std::move(f)); });
  pool.join();
}

void fan_handwritten(benchmark::State& state) {
  handwritten_pool pool{workers};
  run_fan(state, [&pool](auto f) { pool.post(std::move(f)); });
}

// ---- idle submit -> start latency --------------------------------------------

template <class Post>
void run_latency(benchmark::State& state, Post&& post) {
  using clock = std::chrono::steady_clock;
  std::vector<double> samples;
  for (auto _ : state) {
    // Let the workers go idle (block) first: this measures a wake-up.
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    std::promise<clock::time_point> started;
    auto future = started.get_future();
    const auto t0 = clock::now();
    post([&started] { started.set_value(clock::now()); });
    const auto t1 = future.get();
    const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
    samples.push_back(ns);
    state.SetIterationTime(ns * 1e-9);
  }
  std::sort(samples.begin(), samples.end());
  auto at = [&samples](double q) {
    return samples.empty() ? 0.0 : samples[static_cast<std::size_t>(q * (samples.size() - 1))];
  };
  state.counters["p50_ns"] = at(0.50);
  state.counters["p99_ns"] = at(0.99);
}

void latency_ctxpool(benchmark::State& state) {
  ctxpool::thread_pool pool{workers};
  request_scope scope;
  run_latency(state, [&pool](auto f) { pool.post(std::move(f)); });
}

void latency_asio_thread_pool(benchmark::State& state) {
  asio::thread_pool pool{workers};
  run_latency(state, [&pool](auto f) { asio::post(pool, std::move(f)); });
  pool.join();
}

void latency_handwritten(benchmark::State& state) {
  handwritten_pool pool{workers};
  run_latency(state, [&pool](auto f) { pool.post(std::move(f)); });
}

// ---- the price of propagation + wipe, per task ---------------------------------

// Tasks run inline on one worker (the executor's execute from a pool thread),
// so no queue or wake-up blurs the figure: the difference between the two
// rows is what propagation and the slot wipe add to each task.
void per_task_cost(benchmark::State& state, bool propagate_and_wipe) {
  ctxpool::thread_pool pool{ctxpool::thread_pool_options{1, "ctxpool-", {}},
                            ctxpool::detail::pool_tuning{propagate_and_wipe, propagate_and_wipe}};
  request_scope scope;
  auto executor = pool.get_executor();
  constexpr int tasks = 10'000;
  for (auto _ : state) {
    pool.submit([&executor] {
          for (int i = 0; i < tasks; ++i) executor.execute([] {});
        })
        .get();
  }
  state.SetItemsProcessed(state.iterations() * tasks);
}

void task_cost_with_propagation_and_wipe(benchmark::State& state) { per_task_cost(state, true); }
void task_cost_without(benchmark::State& state) { per_task_cost(state, false); }

constexpr double min_time = 0.3;  // seconds per benchmark and repetition

}  // namespace

BENCHMARK(ctxpool_post)->UseRealTime()->MinTime(min_time);
BENCHMARK(ctxpool_post_no_propagation_no_wipe)->UseRealTime()->MinTime(min_time);
BENCHMARK(ctxpool_submit)->UseRealTime()->MinTime(min_time);
BENCHMARK(ctxpool_asio_post)->UseRealTime()->MinTime(min_time);
BENCHMARK(asio_thread_pool_post)->UseRealTime()->MinTime(min_time);
BENCHMARK(handwritten_post)->UseRealTime()->MinTime(min_time);
BENCHMARK(std_async)->UseRealTime()->MinTime(min_time);
BENCHMARK(future_ctxpool_submit)->UseRealTime()->MinTime(min_time);
BENCHMARK(future_asio_thread_pool)->UseRealTime()->MinTime(min_time);
BENCHMARK(future_handwritten)->UseRealTime()->MinTime(min_time);
BENCHMARK(future_std_async)->UseRealTime()->MinTime(min_time);
BENCHMARK(fan_ctxpool)->UseRealTime()->MinTime(min_time);
BENCHMARK(fan_asio_thread_pool)->UseRealTime()->MinTime(min_time);
BENCHMARK(fan_handwritten)->UseRealTime()->MinTime(min_time);
BENCHMARK(task_cost_with_propagation_and_wipe)->UseRealTime()->MinTime(min_time);
BENCHMARK(task_cost_without)->UseRealTime()->MinTime(min_time);
BENCHMARK(latency_ctxpool)->UseManualTime()->Iterations(2000);
BENCHMARK(latency_asio_thread_pool)->UseManualTime()->Iterations(2000);
BENCHMARK(latency_handwritten)->UseManualTime()->Iterations(2000);

BENCHMARK_MAIN();
