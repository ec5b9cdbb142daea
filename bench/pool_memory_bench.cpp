// W7: bytes per queued task with a 32-byte capture, for ctxpool and its peers
// (see peers.hpp), counted from anonymous resident memory.
//
// Each measurement runs in a fresh child process, so no peer inherits memory
// another freed (or an allocator such as TBB's keeps cached): the workers are
// parked on blocker tasks, resident memory is read, a million tasks are
// queued, resident memory is read again, then the blockers are released and
// every task must run. The `bytes_per_task` counter is the growth of
// anonymous resident memory (heap, mmap'ed memory) divided by the task count:
// the task node, the queue's share and allocator overhead. File-backed pages
// are left out: the first call of a library function inside the measured loop
// (glibc's sbrk or mmap path, say) maps its code, and the kernel's fault-around
// maps 64 KiB of it at a time, which is code, not memory the queued tasks hold
// (and varies with the binary's layout).
// std::async has no queue (each task starts a thread) and is not measured.
//
//   pool_memory_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>

#include "peers.hpp"

namespace {

using bench::completion;

constexpr int queued_tasks = 1'000'000;

/// Anonymous resident memory of this process in bytes: /proc/self/statm's
/// resident pages less its shared (file-backed) ones; -1 when unreadable.
long anonymous_resident_bytes() {
  long pages_total = 0;
  long pages_resident = 0;
  long pages_shared = 0;
  long pages = -1;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld %ld", &pages_total, &pages_resident, &pages_shared) == 3) {
      pages = pages_resident - pages_shared;
    }
    std::fclose(f);
  }
  return pages < 0 ? -1 : pages * sysconf(_SC_PAGESIZE);
}

/// Holds workers inside a task until released.
class blocker_gate {
 public:
  void hold() {
    started_.fetch_add(1, std::memory_order_acq_rel);
    started_.notify_all();
    while (!released_.load(std::memory_order_acquire))
      released_.wait(false, std::memory_order_acquire);
  }
  /// Whether `count` workers are held within a minute (a peer that cannot
  /// give each blocker its own worker fails the measurement instead of hanging).
  bool wait_started(int count) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    while (started_.load(std::memory_order_acquire) < count) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return true;
  }
  void release() {
    released_.store(true, std::memory_order_release);
    released_.notify_all();
  }

 private:
  std::atomic<int> started_{0};
  std::atomic<bool> released_{false};
};

/// A task whose callable is exactly 32 bytes: a pointer and three words.
struct task32 {
  completion* done;
  std::uint64_t a, b, c;
  void operator()() const {
    benchmark::DoNotOptimize(a ^ b ^ c);
    done->count_down();
  }
};
static_assert(sizeof(task32) == 32);

/// In the child: bytes of resident memory per queued task, or a negative
/// value when the peer's workers could not all be blocked or a task was lost.
template <class Peer>
double measure_bytes_per_task() {
  // Only in the child: the parent must stay single-threaded to fork safely.
  bench::stall_watchdog watchdog{std::chrono::seconds(120)};
  completion done;
  blocker_gate gate;
  double bytes_per_task = -1;
  {
    Peer peer;
    peer.session([&] {
      for (int i = 0; i < Peer::blockable_workers; ++i) peer.post([&gate] { gate.hold(); });
      if (!gate.wait_started(Peer::blockable_workers)) {
        gate.release();
        peer.wait(done, bench::feed::latch);
        return;
      }
      done.arm(queued_tasks);
      malloc_trim(0);
      const long before = anonymous_resident_bytes();
      for (int i = 0; i < queued_tasks; ++i) {
        const auto n = static_cast<std::uint64_t>(i);
        peer.post(task32{&done, n, n * 3, n * 7});
      }
      const long after = anonymous_resident_bytes();
      gate.release();
      peer.wait(done, bench::feed::latch);
      if (done.remaining() == 0 && before > 0) {
        bytes_per_task = static_cast<double>(after - before) / queued_tasks;
      }
    });
  }
  return bytes_per_task;
}

/// Runs `measure` in a forked child and returns what it reported (negative on failure).
template <class Measure>
double in_child_process(Measure measure) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    close(fds[0]);
    double value = -1;
    try {
      value = measure();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "pool_memory_bench: %s\n", e.what());
    }
    const bool written = write(fds[1], &value, sizeof value) == static_cast<ssize_t>(sizeof value);
    _exit(written ? 0 : 1);
  }
  close(fds[1]);
  double value = -1;
  if (read(fds[0], &value, sizeof value) != static_cast<ssize_t>(sizeof value)) value = -1;
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) value = -1;
  return value;
}

template <class Peer>
void w7_bytes_per_task(benchmark::State& state) {
  double bytes = 0;
  for (auto _ : state) {
    bytes = in_child_process(measure_bytes_per_task<Peer>);
    if (bytes < 0) {
      state.SkipWithError("the peer's workers could not be blocked or a queued task never ran");
      return;
    }
  }
  state.counters["bytes_per_task"] = bytes;
}

}  // namespace

BENCHMARK(w7_bytes_per_task<bench::ctxpool_peer>)->Name("W7_bytes_per_task/ctxpool")->Iterations(1);
BENCHMARK(w7_bytes_per_task<bench::handwritten_peer>)
    ->Name("W7_bytes_per_task/handwritten")
    ->Iterations(1);
BENCHMARK(w7_bytes_per_task<bench::asio_peer>)->Name("W7_bytes_per_task/asio")->Iterations(1);
#if CTXPOOL_BENCH_HAVE_TBB
BENCHMARK(w7_bytes_per_task<bench::tbb_enqueue_peer>)
    ->Name("W7_bytes_per_task/tbb_enqueue")
    ->Iterations(1);
BENCHMARK(w7_bytes_per_task<bench::tbb_task_group_peer>)
    ->Name("W7_bytes_per_task/tbb_task_group")
    ->Iterations(1);
#endif

BENCHMARK_MAIN();
