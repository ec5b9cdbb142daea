// A coroutine that resumes on another thread sees that thread's context,
// thread-local slots and cancellation, even when it read them before it
// suspended. Clang (16 at least) may keep the address of a thread_local
// computed before a co_await and use it after the resumption (LLVM issues
// 47179 and 63022); every access ctxpool inlines into a coroutine must be
// immune. The coroutines here are plain C++20 ones resumed by hand, so the
// thread and the context each step runs in are fixed: no scheduler involved.
#include <ctxpool/cancellation.hpp>
#include <ctxpool/context.hpp>
#include <ctxpool/thread_local.hpp>

#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

#include "support/manual_coroutine.hpp"

namespace {

ctxpool::context_var<int> step{"step", 0};
ctxpool::context_var<std::string> who{"who"};
ctxpool::thread_local_var<int> per_thread{"per_thread"};

using ctxpool_test::manual_task;
using ctxpool_test::suspend_here;

/// What one step of the coroutine below saw, read on each side of its
/// suspension.
struct observed {
  int step_before = -1;
  int step_after = -1;
  std::string who_after;
  int slot_before = -1;
  int slot_after = -1;
  bool current_before = false;
  bool current_after = true;
};

// The accesses sit in the coroutine's own body on both sides of the
// suspension and in a loop, as in user code (clang hoists the address out
// of the loop, LLVM issue 63022).
manual_task read_across_thread_switches(observed* out, int rounds, const ctxpool::context& first) {
  for (int i = 0; i < rounds; ++i) {
    out[i].step_before = step.get();
    out[i].slot_before = per_thread.value_or(-2);
    out[i].current_before = first.is_current();
    co_await suspend_here{};
    out[i].step_after = step.get();
    out[i].who_after = who.get_or("none");
    out[i].slot_after = per_thread.value_or(-2);
    out[i].current_after = first.is_current();
  }
}

}  // namespace

TEST_CASE("a coroutine resumed on another thread reads that thread's context, not the first's") {
  // The first thread stays inside `first`, with its get() cache warm for
  // `step`, while each other thread resumes the coroutine inside a context of
  // its own: an address kept across the suspension would read the first
  // thread's cache, slots and current context.
  constexpr int rounds = 4;
  ctxpool::context first;
  first.run([] { step.set(1); });
  std::vector<observed> seen(rounds);
  first.run([&] {
    per_thread.set(10);
    manual_task task = read_across_thread_switches(seen.data(), rounds, first);
    for (int i = 0; i < rounds; ++i) {
      CHECK(step.get() == 1);  // keeps the first thread's cache entry warm
      std::thread other([&] {
        per_thread.set(20 + i);
        ctxpool::context elsewhere;
        elsewhere.run([&] {
          step.set(100 + i);
          who.set("thread " + std::to_string(i));
          task.handle.resume();
        });
      });
      other.join();
    }
    CHECK(task.handle.done());
    CHECK(!task.handle.promise().error);
    CHECK(step.get() == 1);
  });
  for (int i = 0; i < rounds; ++i) {
    CAPTURE(i);
    // The first step runs on the first thread; each later one on the thread
    // that resumed the previous step.
    CHECK(seen[i].step_before == (i == 0 ? 1 : 100 + i - 1));
    CHECK(seen[i].slot_before == (i == 0 ? 10 : 20 + i - 1));
    CHECK(seen[i].current_before == (i == 0));
    CHECK(seen[i].step_after == 100 + i);
    CHECK(seen[i].who_after == "thread " + std::to_string(i));
    CHECK(seen[i].slot_after == 20 + i);
    CHECK_FALSE(seen[i].current_after);
  }
}

TEST_CASE(
    "a coroutine resumed on another thread sees the cancellation of the context it resumes in") {
  ctxpool::cancellation_source source;
  source.cancel();
  bool before = true;
  bool after = false;
  auto body = [](bool& b, bool& a) -> manual_task {
    b = ctxpool::this_task::cancelled();
    co_await suspend_here{};
    a = ctxpool::this_task::cancelled();
  };
  manual_task task = body(before, after);
  std::thread other([&] { source.run([&] { task.handle.resume(); }); });
  other.join();
  CHECK(task.handle.done());
  CHECK_FALSE(before);
  CHECK(after);
}
