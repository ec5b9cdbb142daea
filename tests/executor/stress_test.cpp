// Stress: a million tasks with random sets and nested submits; no value may
// ever cross from one task to another, neither through the context nor
// through a thread-local slot left behind on a reused worker.
//
// The task count comes from CTXPOOL_STRESS_TASKS when set. By default it is
// 1,000,000; sanitizer builds default to fewer (TSan 100,000, ASan 200,000)
// because they run 5-20x slower and the CI has a time budget; the checks are
// the same.
#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <string>
#include <vector>

#include <boost/asio/post.hpp>

namespace asio = boost::asio;

namespace {

#if defined(__SANITIZE_THREAD__)
constexpr std::uint64_t default_tasks = 100'000;
#elif defined(__SANITIZE_ADDRESS__)
constexpr std::uint64_t default_tasks = 200'000;
#else
constexpr std::uint64_t default_tasks = 1'000'000;
#endif

std::uint64_t stress_tasks() {
  if (const char* text = std::getenv("CTXPOOL_STRESS_TASKS")) {
    const std::uint64_t n = std::strtoull(text, nullptr, 10);
    if (n > 0) return n;
  }
  return default_tasks;
}

ctxpool::context_var<std::uint64_t> owner{"owner", 0};       // the task that set it last
ctxpool::context_var<std::uint64_t> scratch{"scratch", 0};   // random values
ctxpool::context_var<std::uint64_t> unrelated{"unrelated"};  // set by some tasks only
ctxpool::thread_local_var<std::uint64_t> residue{"residue"};
ctxpool::local_stack<std::uint64_t> frames{"frames"};

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

struct stress {
  ctxpool::thread_pool& pool;
  std::atomic<std::uint64_t> next_id{1};
  std::atomic<std::uint64_t> remaining;  // tasks still to be created
  std::atomic<std::uint64_t> ran{0};
  std::atomic<std::uint64_t> failures{0};

  bool take_budget() {
    std::uint64_t left = remaining.load(std::memory_order_relaxed);
    while (left > 0) {
      if (remaining.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) return true;
    }
    return false;
  }

  /// One task: checks what it inherited, sets values, maybe spawns children.
  void run(std::uint64_t expected_owner, std::uint64_t expected_scratch,
           std::uint64_t expected_unrelated) {
    ran.fetch_add(1, std::memory_order_relaxed);
    if (owner.get() != expected_owner || scratch.get() != expected_scratch ||
        unrelated.get_or(0) != expected_unrelated || residue.has_value() || frames.size() != 0) {
      failures.fetch_add(1, std::memory_order_relaxed);
    }
    const std::uint64_t id = next_id.fetch_add(1, std::memory_order_relaxed);
    owner.set(id);
    residue.set(id);  // must be wiped before the next task on this worker
    frames.push(id);
    std::uint64_t r = mix(id);
    if ((r & 1) != 0) unrelated.set(id);  // otherwise the inherited value stays
    const std::uint64_t inherited = unrelated.get_or(0);
    for (int child = 0; child < static_cast<int>(r % 4); ++child) {
      if (!take_budget()) break;
      const std::uint64_t value = mix(r + child);
      scratch.set(value);
      switch ((r >> 8) % 3) {
        case 0: pool.post([this, id, value, inherited] { run(id, value, inherited); }); break;
        case 1:
          // The future is dropped on purpose: the task reports through `failures`.
          (void)pool.submit([this, id, value, inherited] { run(id, value, inherited); });
          break;
        default:
          asio::post(pool.get_executor(),
                     [this, id, value, inherited] { run(id, value, inherited); });
      }
      // A set after the submit must not reach the child.
      scratch.set(mix(value));
    }
    if (owner.get() != id || residue.value() != id || *frames.top() != id) {
      failures.fetch_add(1, std::memory_order_relaxed);
    }
  }
};

}  // namespace

TEST_CASE("a million tasks with nested submits and random sets: no value crosses tasks") {
  const std::uint64_t total = stress_tasks();
  ctxpool::thread_pool pool{4};
  stress s{pool, {}, {total}};
  // The feeding thread sets its own value; roots must see exactly it.
  std::uint64_t round = 0;
  while (s.take_budget()) {
    ++round;
    ctxpool::set_scope root_owner(owner, ~round);
    ctxpool::set_scope root_scratch(scratch, round);
    std::vector<std::future<void>> roots;
    roots.push_back(pool.submit([&s, round] { s.run(~round, round, 0); }));
    for (int i = 0; i < 63 && s.take_budget(); ++i) {
      pool.post([&s, round] { s.run(~round, round, 0); });
    }
    for (auto& f : roots) f.get();
  }
  pool.wait();
  CHECK(s.ran == total);
  CHECK(s.failures == 0);
  CHECK(owner.get() == 0);  // the feeder's context is untouched
  CHECK_FALSE(residue.has_value());
}
