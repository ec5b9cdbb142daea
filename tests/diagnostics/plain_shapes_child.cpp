// Program shapes with plain `thread_local`s, no ctxpool type in their state:
// plain_shapes_test runs each one under CTXPOOL_DIAGNOSTICS=residue with 1 and
// 4 workers, repeatedly. A buggy shape must exit 66 naming its variable and
// the read site; a clean one must exit 0.
//
// Usage: plain_shapes_child <shape> <workers>.
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <ctxpool/diagnostics.hpp>
#include <ctxpool/executor.hpp>

void lib_count_request();  // plain_tls_lib: ++ a thread_local of the library

thread_local std::string session_token;  // "" = anonymous
thread_local int call_depth = 0;
thread_local int config_level = 42;      // only ever read
thread_local std::mt19937 request_rng{12345};  // a deliberate per-thread cache
CTXPOOL_THREAD_CACHE(request_rng);

std::string& current_route() {
  static thread_local std::string route = std::string(40, '-');  // lazily initialised
  return route;
}

namespace {

// Where a request's route length goes: a discarded `size()` would be no access
// at all (the compiler drops the load), so the reads below store it here.
volatile std::size_t route_length_sink = 0;

[[gnu::noinline]] void login(int i) { session_token = "token-" + std::to_string(i); }
[[gnu::noinline]] bool is_anonymous() { return session_token.empty(); }  // the read site

/// Runs 30 requests through `request` on the pool (every third one anonymous in
/// the shapes that have anonymous requests). Plain reads are watched once some
/// task left the variable dirty, so a few requests in, every reader is seen.
void serve(ctxpool::thread_pool& pool, const std::function<void(int)>& request) {
  std::vector<std::future<void>> done;
  for (int i = 0; i < 30; ++i) done.push_back(pool.submit([&request, i] { request(i); }));
  for (auto& f : done) f.get();
}

/// A hand-written std::thread pool, with one line for detection.
class job_pool {
 public:
  explicit job_pool(int threads) {
    for (int i = 0; i < threads; ++i) {
      workers_.emplace_back([this] {
        for (;;) {
          std::function<void()> job;
          {
            std::unique_lock lock(mutex_);
            ready_.wait(lock, [this] { return done_ || !jobs_.empty(); });
            if (jobs_.empty()) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
          }
          ctxpool::diagnostics::task_scope task{"job"};  // the one line
          job();
        }
      });
    }
  }
  ~job_pool() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    ready_.notify_all();
    for (auto& t : workers_) t.join();
  }
  void post(std::function<void()> job) {
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back(std::move(job));
    }
    ready_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  bool done_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  const std::string shape = argv[1];
  const int workers = std::atoi(argv[2]);
  if (workers < 1) return 2;
  if (shape == "handwritten_pool") {
    std::atomic<int> anonymous_seen_as_someone{0};
    {
      job_pool pool(workers);
      for (int i = 0; i < 9; ++i) {
        pool.post([i, &anonymous_seen_as_someone] {
          if (i % 3 == 0) {
            if (!is_anonymous()) ++anonymous_seen_as_someone;
          } else {
            login(i);
          }
        });
      }
    }
    return 0;
  }
  const std::map<std::string, std::function<void(int)>> shapes = {
      // buggy
      {"raw_token", [](int i) { i % 3 == 0 ? (void)is_anonymous() : login(i); }},
      {"raw_depth", [](int) { ++call_depth; }},  // left incremented: the next ++ reads it
      {"static_local",
       [](int i) {
         if (i % 3 != 0) current_route() = "/account/" + std::to_string(i);
         else route_length_sink = current_route().size();
       }},
      {"shared_library", [](int) { lib_count_request(); }},
      // clean
      {"write_first",
       [](int i) {
         login(i);
         (void)is_anonymous();
       }},
      {"read_only", [](int) { volatile int level = config_level; (void)level; }},
      {"lazy_static_read", [](int) { route_length_sink = current_route().size(); }},
      {"rng_cache", [](int) { (void)request_rng(); }},
  };
  const auto it = shapes.find(shape);
  if (it == shapes.end()) return 2;
  ctxpool::thread_pool pool{static_cast<std::size_t>(workers)};
  serve(pool, it->second);
  pool.join();
  return 0;
}
