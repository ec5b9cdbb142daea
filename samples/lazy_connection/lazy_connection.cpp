// lazy_connection: one connection per worker thread, a deliberate per-thread cache.
//
// Opening a database connection is expensive and a connection must not be
// used by two threads at once, so each worker keeps its own: opened lazily by
// the first task that needs it, reused by every later task on that thread,
// closed when the thread exits. That is what `lifetime::thread` is for: unlike
// the default `lifetime::task`, such a slot is not wiped after each task and is
// never reported as residue by CTXPOOL_DIAGNOSTICS=residue -- keeping it is
// the point.
//
// Checks, and exits non-zero if any fails: nothing is opened before the first
// task; exactly one connection per worker is opened; a connection is only
// used on the thread that opened it; connections are reused across tasks and
// stay open while the pool lives; every connection is closed once the pool is
// joined.
#include <atomic>
#include <cstdio>
#include <future>
#include <latch>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <ctxpool/executor.hpp>
#include <ctxpool/thread_local.hpp>

namespace {

std::atomic<int> opened{0};
std::atomic<int> closed{0};
std::atomic<int> failures{0};

/// A stand-in for a database connection: expensive to open, single-threaded.
class connection {
 public:
  connection() : id_(opened.fetch_add(1) + 1), owner_(std::this_thread::get_id()) {
    std::printf("  open  connection %d on its worker thread\n", id_);
  }
  ~connection() {
    closed.fetch_add(1);
    std::printf("  close connection %d after %d queries\n", id_, queries_);
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Runs a query; returns the id of the connection that ran it.
  int query(const std::string& /*sql*/) {
    if (owner_ != std::this_thread::get_id()) failures.fetch_add(1);  // used off its thread
    ++queries_;
    return id_;
  }

 private:
  int id_;
  std::thread::id owner_;
  int queries_ = 0;
};

ctxpool::thread_local_var<connection> conn{"conn", ctxpool::lifetime::thread};

/// This worker's connection, opened on first use.
connection& db() {
  if (!conn.has_value()) conn.emplace();
  return conn.value();
}

int run_query(int n) {
  return db().query("SELECT name FROM users WHERE id = " + std::to_string(n));
}

}  // namespace

int main() {
  constexpr std::size_t workers = 3;
  constexpr int tasks = 3000;
  std::map<int, int> uses;  // connection id -> tasks that used it
  {
    ctxpool::thread_pool pool(workers);
    if (opened.load() != 0) {
      std::printf("FAIL: a connection was opened before any task needed one\n");
      return 1;
    }
    // The first `workers` tasks meet at a latch, so that every worker runs at
    // least one task and opens its connection.
    std::latch every_worker(static_cast<std::ptrdiff_t>(workers));
    std::vector<std::future<int>> results;
    for (int n = 0; n < tasks; ++n) {
      const bool first = n < static_cast<int>(workers);
      results.push_back(pool.submit([n, first, &every_worker] {
        if (first) every_worker.arrive_and_wait();
        return run_query(n);
      }));
    }
    for (auto& r : results) ++uses[r.get()];
    pool.wait();
    std::printf("  all %d tasks done: %d connection(s) opened, %d closed while the pool lives\n",
                tasks, opened.load(), closed.load());
    if (closed.load() != 0) {
      std::printf("FAIL: a connection was closed while its worker was still alive\n");
      failures.fetch_add(1);
    }
    pool.join();  // the workers exit: their connections close
  }

  std::printf("lazy_connection: %zu workers, %d tasks, opened %d, closed %d\n", workers, tasks,
              opened.load(), closed.load());
  for (const auto& [id, count] : uses) std::printf("  connection %d served %d tasks\n", id, count);

  bool ok = failures.load() == 0;
  if (opened.load() != static_cast<int>(workers)) {
    std::printf("FAIL: expected one connection per worker (%zu), opened %d\n", workers,
                opened.load());
    ok = false;
  }
  if (closed.load() != opened.load()) {
    std::printf("FAIL: %d connection(s) still open after join\n", opened.load() - closed.load());
    ok = false;
  }
  int reused = 0;
  for (const auto& entry : uses) reused += entry.second > 1 ? 1 : 0;
  if (reused == 0) {
    std::printf("FAIL: no connection was reused across tasks\n");
    ok = false;
  }
  if (failures.load() != 0) std::printf("FAIL: %d check(s) failed inside tasks\n", failures.load());
  std::printf("%s\n",
              ok ? "OK: one lazily opened connection per worker, reused, closed at exit" : "FAIL");
  return ok ? 0 : 1;
}
