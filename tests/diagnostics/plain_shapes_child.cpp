// Program shapes with plain `thread_local`s, no ctxpool type in their state:
// plain_shapes_test runs each one under CTXPOOL_DIAGNOSTICS=residue with 1 and
// 4 workers, repeatedly. A buggy shape must exit 66 naming its variable and
// the read site; a clean one must exit 0.
//
// Usage: plain_shapes_child <shape> <workers>.
#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <ctxpool/diagnostics.hpp>
#include <ctxpool/executor.hpp>

void lib_count_request();  // plain_tls_lib: ++ a thread_local of the library

thread_local std::string session_token;  // "" = anonymous
thread_local int call_depth = 0;
thread_local int config_level = 42;            // only ever read
thread_local std::mt19937 request_rng{12345};  // a deliberate per-thread cache
CTXPOOL_THREAD_CACHE(request_rng);

/// Per-request state with the field that matters 64 bytes in.
struct request_state {
  char scratch[64];
  int user_id;  // 0 = anonymous
};
static_assert(offsetof(request_state, user_id) == 64);
thread_local request_state request{};
thread_local std::vector<int> pending_ids;                        // left non-empty by some tasks
thread_local std::unordered_map<std::string, int> header_counts;  // likewise

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

volatile std::uint64_t work_sink = 0;

/// About 200,000 instructions of other work (hashing a request body) before
/// the read: no instruction budget may end the watch first.
[[gnu::noinline]] void hash_request_body() {
  static const std::string body(32768, 'b');
  std::uint64_t h = 1469598103934665603ULL;
  for (int round = 0; round < 2; ++round) {
    for (const char c : body) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  }
  work_sink = h;
}

/// Blocks in read(2) on a pipe that another thread fills a millisecond later.
void wait_on_pipe() {
  int fds[2];
  if (::pipe(fds) != 0) std::abort();
  std::thread writer([fd = fds[1]] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const char byte = 'x';
    if (::write(fd, &byte, 1) != 1) std::abort();
  });
  char byte = 0;
  if (::read(fds[0], &byte, 1) != 1) std::abort();
  writer.join();
  ::close(fds[0]);
  ::close(fds[1]);
}

/// Blocks on a mutex another thread holds for a millisecond.
void wait_on_mutex() {
  static std::mutex shared;
  std::unique_lock held(shared);
  std::thread holder([&held] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    held.unlock();
  });
  std::this_thread::sleep_for(std::chrono::microseconds(100));
  std::lock_guard again(shared);  // contended until the holder lets go
  holder.join();
}

[[gnu::noinline]] bool is_anonymous_request() { return request.user_id == 0; }  // the read site
[[gnu::noinline]] long pending_sum() {  // the read site: iterates what an earlier task left
  long sum = 0;
  for (const int id : pending_ids) sum += id;
  return sum;
}
[[gnu::noinline]] long header_total() {  // the read site
  long sum = 0;
  for (const auto& [name, count] : header_counts) sum += count + static_cast<long>(name.size());
  return sum;
}
volatile long read_sink = 0;

/// The byte count of a copy the compiler cannot turn into a store: the C
/// library's memcpy, which is never instrumented, writes the variable.
volatile std::size_t int_bytes = sizeof(int);
[[gnu::noinline]] void set_depth_uninstrumented(int value) {
  std::memcpy(&call_depth, &value, int_bytes);
}

/// The plugin's functions, loaded on the pool's first task that needs them.
struct plugin_api {
  void (*set)(int) = nullptr;
  int (*get)() = nullptr;
};
plugin_api& plugin() {
  static plugin_api api = [] {
    void* handle = ::dlopen(CTXPOOL_PLAIN_PLUGIN, RTLD_NOW);
    if (handle == nullptr) {
      std::fprintf(stderr, "dlopen: %s\n", ::dlerror());
      std::abort();
    }
    plugin_api a;
    a.set = reinterpret_cast<void (*)(int)>(::dlsym(handle, "plugin_set"));
    a.get = reinterpret_cast<int (*)()>(::dlsym(handle, "plugin_get"));
    if (a.set == nullptr || a.get == nullptr) std::abort();
    return a;
  }();
  return api;
}

/// Runs `requests` requests (30 in most shapes) through `request` on the pool (every third one anonymous in
/// the shapes that have anonymous requests). Plain reads are watched once some
/// task left the variable dirty, so a few requests in, every reader is seen.
void serve(ctxpool::thread_pool& pool, const std::function<void(int)>& request, int requests) {
  std::vector<std::future<void>> done;
  for (int i = 0; i < requests; ++i) done.push_back(pool.submit([&request, i] { request(i); }));
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
      {"after_long_work",
       [](int i) {
         if (i % 3 != 0) return login(i);
         hash_request_body();
         (void)is_anonymous();
       }},
      {"after_sleep",
       [](int i) {
         if (i % 3 != 0) return login(i);
         std::this_thread::sleep_for(std::chrono::milliseconds(1));
         (void)is_anonymous();
       }},
      {"after_pipe_read",
       [](int i) {
         if (i % 3 != 0) return login(i);
         wait_on_pipe();
         (void)is_anonymous();
       }},
      {"after_mutex",
       [](int i) {
         if (i % 3 != 0) return login(i);
         wait_on_mutex();
         (void)is_anonymous();
       }},
      {"struct_field",
       [](int i) {
         if (i % 3 == 0) {
           read_sink = is_anonymous_request();
         } else {
           request.user_id = i;
         }
       }},
      {"dlopen_plugin",
       [](int i) {
         if (i % 3 == 0) {
           read_sink = plugin().get();
         } else {
           plugin().set(i);
         }
       }},
      {"vector_iterated",
       [](int i) {
         if (i % 3 == 0) {
           read_sink = pending_sum();
         } else {
           pending_ids.push_back(i);
         }
       }},
      {"map_iterated",
       [](int i) {
         if (i % 3 == 0) read_sink = header_total();
         else ++header_counts["x-request-" + std::to_string(i)];
       }},
      // After 270 clean requests, only the C library writes call_depth: the
      // task-end diff, not a callback, must see it, however many tasks ran.
      {"late_uninstrumented_write",
       [](int i) {
         if (i < 270) {
           read_sink = config_level;
         } else if (i % 3 == 0) {
           read_sink = call_depth;  // the late read
         } else {
           set_depth_uninstrumented(i);
         }
       }},
      // clean
      {"write_first",
       [](int i) {
         login(i);
         (void)is_anonymous();
       }},
      {"read_only",
       [](int) {
         volatile int level = config_level;
         (void)level;
       }},
      {"assign_then_read",  // std::string assignment of a literal: libstdc++'s _M_replace
       [](int i) {
         session_token = i % 2 == 0 ? "anonymous" : "guest";  // often the value it had
         (void)is_anonymous();
       }},
      {"lazy_static_read", [](int) { route_length_sink = current_route().size(); }},
      {"rng_cache", [](int) { (void)request_rng(); }},
  };
  const auto it = shapes.find(shape);
  if (it == shapes.end()) return 2;
  ctxpool::thread_pool pool{static_cast<std::size_t>(workers)};
  serve(pool, it->second, shape == "late_uninstrumented_write" ? 300 : 30);
  pool.join();
  return 0;
}
