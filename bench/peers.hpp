// The pools ctxpool is measured against, behind one small interface, and the
// pieces every workload shares (completion counting, the two ways a feeder
// waits, producer threads, task bodies of a known cost).
//
// Every peer offers:
//   post(f)                 queue a copyable callable, fire and forget
//   submit(f)               queue a callable, return a std::future of its result
//   session(body)           run one benchmark iteration's body (TBB's task_group
//                           needs it inside its arena; everyone else just calls it)
//   wait(done, how)         wait until `done` reached zero (task_group: tg.wait())
//   producer_scope()        what a submitting thread sets up (ctxpool: a request id)
//   blockable_workers       threads a W7 blocker task can occupy
//   max_batch               the most tasks one iteration should queue
//
// Every pool has 2 worker threads (`workers`). Benchmark code, not library
// code: the peers are written the way a user would write them, no tuning.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <ctxpool/context.hpp>
#include <ctxpool/executor.hpp>

#if CTXPOOL_BENCH_HAVE_TBB
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#endif

namespace bench {

inline constexpr int workers = 2;

// ---- progress, so that a hang fails the run instead of stalling it ------------

/// Benchmark iterations finished so far in this process (any thread).
inline std::atomic<std::uint64_t>& progress() {
  static std::atomic<std::uint64_t> count{0};
  return count;
}
inline void note_progress() noexcept { progress().fetch_add(1, std::memory_order_relaxed); }

/// Ends the program with a message when no benchmark iteration finishes for
/// `limit`: a lost task or a worker that never wakes would otherwise hang an
/// unattended `scripts/run.sh bench` instead of failing it. The longest
/// legitimate iteration (std::async's task tree) takes about a second.
class stall_watchdog {
 public:
  explicit stall_watchdog(std::chrono::seconds limit) : thread_([this, limit] { watch(limit); }) {}
  ~stall_watchdog() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  stall_watchdog(const stall_watchdog&) = delete;
  stall_watchdog& operator=(const stall_watchdog&) = delete;

 private:
  void watch(std::chrono::seconds limit) {
    using clock = std::chrono::steady_clock;
    std::unique_lock lock(mutex_);
    std::uint64_t seen = progress().load(std::memory_order_relaxed);
    auto since = clock::now();
    while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) {
      const std::uint64_t now_seen = progress().load(std::memory_order_relaxed);
      if (now_seen != seen) {
        seen = now_seen;
        since = clock::now();
      } else if (clock::now() - since > limit) {
        std::fprintf(stderr,
                     "ctxpool bench: no iteration finished for %lld s, in the benchmark after the "
                     "last one reported: a task was lost or a worker was never woken. Aborting.\n",
                     static_cast<long long>(limit.count()));
        std::abort();
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: it uses the members above
};

// ---- completion counting and the two feeding patterns ------------------------

/// How the submitting thread waits for its tasks: blocked (a latch: futex
/// sleep, woken by the last task) or polling with std::this_thread::yield().
/// On 2 cores the two give schedulers very different chances, so every peer
/// is measured both ways and compared only with the same feed.
enum class feed { latch, yield };

inline const char* feed_name(feed how) { return how == feed::latch ? "latch" : "yield"; }

/// A reusable latch: armed with a task count, counted down by every task.
/// The last count_down wakes a latch-waiter; a yield-waiter polls. On a line
/// of its own: it lives on the submitter's stack, and sharing a line with the
/// submitter's locals would make every count_down slow down the next submit.
class alignas(64) completion {
 public:
  void arm(int tasks) noexcept { remaining_.store(tasks, std::memory_order_relaxed); }
  void count_down() noexcept {
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) remaining_.notify_all();
  }
  void wait(feed how) const noexcept {
    int left;
    while ((left = remaining_.load(std::memory_order_acquire)) != 0) {
      if (how == feed::latch) {
        remaining_.wait(left, std::memory_order_acquire);
      } else {
        std::this_thread::yield();
      }
    }
    note_progress();
  }
  [[nodiscard]] int remaining() const noexcept {
    return remaining_.load(std::memory_order_acquire);
  }

 private:
  std::atomic<int> remaining_{0};
};

template <class T>
void wait_future(std::future<T>& f, feed how) {
  if (how == feed::latch) {
    f.wait();
  } else {
    while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
      std::this_thread::yield();
  }
  note_progress();
}

// ---- task bodies of a known cost --------------------------------------------

/// About 200 ns: a chain of dependent multiply-adds the compiler cannot fold.
inline std::uint32_t small_work(std::uint32_t seed) {
  std::uint32_t x = seed;
  for (int i = 0; i < 170; ++i) x = x * 1103515245u + 12345u;
  return x;
}

/// About 2 us: FNV-1a over 1 KiB (one dependent multiply per byte).
inline std::uint64_t hash_kib(const std::array<unsigned char, 1024>& data, std::uint64_t seed) {
  std::uint64_t h = 14695981039346656037ull ^ seed;
  for (unsigned char byte : data) {
    h ^= byte;
    h *= 1099511628211ull;
  }
  return h;
}

/// `f` as a std::packaged_task behind a shared_ptr: the copyable, const-callable
/// job and the future a user writes for pools that copy their callables
/// (std::function) or call them as const (TBB).
template <class F>
auto shared_packaged_task(F&& f) {
  using result = std::invoke_result_t<std::decay_t<F>&>;
  auto task = std::make_shared<std::packaged_task<result()>>(std::forward<F>(f));
  auto future = task->get_future();
  return std::pair{[task] { (*task)(); }, std::move(future)};
}

// ---- threads that submit concurrently (W4) ----------------------------------

/// `count` persistent threads that run the same job once per `run`, so a
/// benchmark iteration does not pay for creating threads.
class producer_team {
 public:
  explicit producer_team(int count) : count_(count) {
    for (int i = 0; i < count; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~producer_team() {
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (auto& t : threads_) t.join();
  }
  producer_team(const producer_team&) = delete;
  producer_team& operator=(const producer_team&) = delete;

  /// Starts `job` on every thread. The previous run must have finished (wait_idle).
  void run(std::function<void()> job) {
    job_ = std::move(job);
    busy_.store(count_, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
  }
  void wait_idle() const noexcept {
    int busy;
    while ((busy = busy_.load(std::memory_order_acquire)) != 0) busy_.wait(busy);
  }

 private:
  void loop() {
    unsigned seen = 0;
    for (;;) {
      unsigned now;
      while ((now = generation_.load(std::memory_order_acquire)) == seen) generation_.wait(now);
      seen = now;
      if (stop_.load(std::memory_order_relaxed)) return;
      job_();
      if (busy_.fetch_sub(1, std::memory_order_acq_rel) == 1) busy_.notify_all();
    }
  }

  const int count_;
  std::function<void()> job_;
  std::atomic<unsigned> generation_{0};
  std::atomic<int> busy_{0};
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// ---- the peers ---------------------------------------------------------------

/// What submitting threads of a web service look like: a request id is set,
/// so ctxpool has a non-empty context to capture.
inline ctxpool::context_var<std::string> request_id{"request_id"};

struct request_scope {
  ctxpool::token<std::string> token = request_id.set("request-42");
  request_scope() = default;
  request_scope(const request_scope&) = delete;
  request_scope& operator=(const request_scope&) = delete;
  ~request_scope() { request_id.reset(token); }
};

/// Peers whose submitters set nothing up.
struct no_scope {};

/// Shared behaviour: session runs the body; wait uses the completion.
struct plain_session {
  template <class Body>
  void session(Body&& body) {
    body();
  }
  void wait(const completion& done, feed how) { done.wait(how); }
  static no_scope producer_scope() { return {}; }
  static constexpr int max_batch = 1 << 30;
  static constexpr int blockable_workers = workers;
};

/// ctxpool::thread_pool through its own API; every submitter has a request id
/// set. `Threads` is 2 (`workers`) for every comparison; 1 only for the
/// one-thread reference rows.
template <int Threads>
struct basic_ctxpool_peer : plain_session {
  ctxpool::thread_pool pool{Threads};
  request_scope scope;

  template <class F>
  void post(F&& f) {
    pool.post(std::forward<F>(f));
  }
  template <class F>
  auto submit(F&& f) {
    return pool.submit(std::forward<F>(f));
  }
  static std::unique_ptr<request_scope> producer_scope() {
    return std::make_unique<request_scope>();
  }
};
using ctxpool_peer = basic_ctxpool_peer<workers>;

/// boost::asio::thread_pool with asio::post, futures through std::packaged_task.
struct asio_peer : plain_session {
  boost::asio::thread_pool pool{workers};
  ~asio_peer() { pool.join(); }

  template <class F>
  void post(F&& f) {
    boost::asio::post(pool, std::forward<F>(f));
  }
  template <class F>
  auto submit(F&& f) {
    std::packaged_task<std::invoke_result_t<std::decay_t<F>&>()> task(std::forward<F>(f));
    auto future = task.get_future();
    boost::asio::post(pool, std::move(task));
    return future;
  }
};

/// The minimal pool a team writes by hand: std::thread workers, one mutex, one
/// condition variable, a std::queue of std::function.
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
  handwritten_pool(const handwritten_pool&) = delete;
  handwritten_pool& operator=(const handwritten_pool&) = delete;

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

struct handwritten_peer : plain_session {
  handwritten_pool pool{workers};

  template <class F>
  void post(F&& f) {
    pool.post(std::forward<F>(f));
  }
  template <class F>
  auto submit(F&& f) {
    auto [job, future] = shared_packaged_task(std::forward<F>(f));  // std::function copies
    pool.post(std::move(job));
    return std::move(future);
  }
};

/// std::async(std::launch::async): a thread per task. Futures are kept until
/// the iteration's wait, which joins the threads (part of the measured cost).
/// Far slower than any pool, so its batches are smaller.
struct std_async_peer : plain_session {
  static constexpr int max_batch = 500;
  std::mutex mutex;
  std::vector<std::future<void>> futures;

  template <class F>
  void post(F&& f) {
    auto future = std::async(std::launch::async, std::forward<F>(f));
    std::lock_guard lock(mutex);
    futures.push_back(std::move(future));
  }
  template <class F>
  auto submit(F&& f) {
    return std::async(std::launch::async, std::forward<F>(f));
  }
  void wait(const completion& done, feed how) {
    done.wait(how);
    std::vector<std::future<void>> finished;
    {
      std::lock_guard lock(mutex);
      finished.swap(futures);
    }
    finished.clear();
  }
  static constexpr int blockable_workers = 0;  // no queue to measure (W7 n/a)
};

#if CTXPOOL_BENCH_HAVE_TBB
/// oneTBB task_arena::enqueue: fire-and-forget into an arena of 2 worker
/// threads (no slot reserved for the submitter), the cross-thread pattern.
struct tbb_enqueue_peer : plain_session {
  // TBB creates hardware_concurrency - 1 workers by default; the arena wants 2.
  tbb::global_control parallelism{tbb::global_control::max_allowed_parallelism, workers + 1};
  tbb::task_arena arena{workers, 0};
  tbb_enqueue_peer() { arena.initialize(); }

  template <class F>
  void post(F&& f) {
    arena.enqueue(std::forward<F>(f));
  }
  template <class F>
  auto submit(F&& f) {
    auto [job, future] = shared_packaged_task(std::forward<F>(f));  // TBB calls it as const
    arena.enqueue(std::move(job));
    return std::move(future);
  }
};

/// oneTBB task_group run/wait in an arena of 2 threads, TBB's usual model:
/// the thread that waits is one of the two and runs tasks while it waits.
/// `Threads` is 2 for every comparison; 1 (the waiter alone runs every task)
/// only for the one-thread reference rows.
template <int Threads>
struct basic_tbb_task_group_peer {
  static constexpr int max_batch = 1 << 30;
  static constexpr int blockable_workers = Threads - 1;  // the other slot is the waiter's
  tbb::task_arena arena{Threads};
  tbb::task_group group;
  basic_tbb_task_group_peer() { arena.initialize(); }
  ~basic_tbb_task_group_peer() {
    arena.execute([this] { group.wait(); });
  }

  template <class Body>
  void session(Body&& body) {
    arena.execute(body);
  }
  template <class F>
  void post(F&& f) {
    group.run(std::forward<F>(f));
  }
  void wait(const completion&, feed) { group.wait(); }
  static no_scope producer_scope() { return {}; }
};
using tbb_task_group_peer = basic_tbb_task_group_peer<workers>;
#endif

}  // namespace bench
