// Tests of <ctxpool/task_group.hpp>: fork-join with a helping waiter,
// exceptions and cancellation, nesting, what a waiter-run child sees, and
// parallel_for.
#include <ctxpool/task_group.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <ctxpool/cancellation.hpp>
#include <ctxpool/context.hpp>
#include <ctxpool/diagnostics.hpp>
#include <ctxpool/executor.hpp>
#include <ctxpool/thread_local.hpp>

#include "../diagnostics/support.hpp"

using namespace std::chrono_literals;

namespace {

ctxpool::context_var<std::string> request_id{"request_id"};
ctxpool::thread_local_var<std::string> auth_token{"auth_token"};

// Every wait a broken group could make endless is bounded by this; past it
// the test aborts with a message instead of hanging the suite.
constexpr auto hang_bound = 30s;

template <class Future>
void require_ready(Future& future, const char* what) {
  if (future.wait_for(hang_bound) != std::future_status::ready) {
    std::fprintf(stderr, "task_group_test: %s did not finish within the bound (deadlock?)\n", what);
    std::abort();
  }
}

/// Yields until `done()` holds; past the bound, says what never happened
/// and aborts.
template <class Predicate>
void spin_until(Predicate done, const char* what) {
  const auto give_up = std::chrono::steady_clock::now() + hang_bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) {
      std::fprintf(stderr, "task_group_test: %s did not happen within the bound\n", what);
      std::abort();
    }
    std::this_thread::yield();
  }
}

/// Occupies every worker of a pool until released, so that a group's
/// children can only be run by the waiter (the helpers queue behind it).
class busy_workers {
 public:
  busy_workers(ctxpool::thread_pool& pool, std::size_t workers) {
    for (std::size_t i = 0; i < workers; ++i) {
      done_.push_back(pool.submit([this, released = release_.get_future().share()] {
        ++started_;
        if (released.wait_for(hang_bound) != std::future_status::ready) std::abort();
      }));
    }
    spin_until([&] { return started_ >= static_cast<int>(workers); }, "the blocking tasks' start");
  }
  ~busy_workers() { release(); }
  void release() {
    if (released_) return;
    released_ = true;
    release_.set_value();
    for (auto& done : done_) require_ready(done, "a blocking task");
  }

 private:
  std::promise<void> release_;
  std::vector<std::future<void>> done_;
  std::atomic<int> started_{0};
  bool released_ = false;
};

/// A binary tree of groups: each node runs its two children in a group of
/// its own and waits. Counts the leaves.
void tree(ctxpool::thread_pool& pool, int depth, std::atomic<int>& leaves) {
  if (depth == 0) {
    ++leaves;
    return;
  }
  ctxpool::task_group group{pool};
  group.run([&] { tree(pool, depth - 1, leaves); });
  group.run([&] { tree(pool, depth - 1, leaves); });
  group.wait();
}

}  // namespace

TEST_CASE("task_group: wait returns once every child ran, and their effects are visible") {
  ctxpool::thread_pool pool{2};
  ctxpool::task_group group{pool};
  std::vector<int> out(100, 0);
  for (int i = 0; i < 100; ++i) group.run([&out, i] { out[i] = i + 1; });
  CHECK(group.wait() == ctxpool::task_group_status::complete);
  for (int i = 0; i < 100; ++i) CHECK(out[i] == i + 1);
  // Empty again and usable.
  std::atomic<int> again{0};
  group.run([&] { ++again; });
  group.wait();
  CHECK(again == 1);
}

TEST_CASE(
    "task_group: each child starts in a snapshot of the context at run, and its sets stay its own") {
  ctxpool::thread_pool pool{2};
  ctxpool::context{}.run([&] {
    ctxpool::task_group group{pool};
    std::string first;
    std::string second;
    auto token = request_id.set("first");
    group.run([&] {
      first = request_id.get();
      request_id.set("changed by the child");
    });
    request_id.reset(token);
    request_id.set("second");
    group.run([&] { second = request_id.get(); });
    group.wait();
    CHECK(first == "first");
    CHECK(second == "second");
    CHECK(request_id.get() == "second");
  });
}

TEST_CASE(
    "task_group: the first exception is rethrown by wait and children not yet started are skipped") {
  ctxpool::thread_pool pool{1};
  busy_workers busy(pool, 1);  // the waiter alone runs the children, newest first
  ctxpool::task_group group{pool};
  std::atomic<int> ran{0};
  for (int i = 0; i < 10; ++i) group.run([&] { ++ran; });
  group.run([] { throw std::runtime_error("child failed"); });
  CHECK_THROWS_WITH_AS(group.wait(), "child failed", std::runtime_error);
  CHECK(ran == 0);
  busy.release();
  // The group is usable again and no longer cancelled.
  CHECK_FALSE(group.is_cancelling());
  group.run([&] { ++ran; });
  CHECK(group.wait() == ctxpool::task_group_status::complete);
  CHECK(ran == 1);
}

TEST_CASE("task_group: a child's exception cancels its running siblings' contexts") {
  ctxpool::thread_pool pool{2};
  ctxpool::task_group group{pool};
  std::promise<void> sibling_started;
  std::atomic<bool> sibling_saw_cancel{false};
  group.run([&] {
    sibling_started.set_value();
    const auto give_up = std::chrono::steady_clock::now() + hang_bound;
    while (!ctxpool::this_task::cancelled() && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::yield();
    }
    sibling_saw_cancel = ctxpool::this_task::cancelled();
  });
  auto started = sibling_started.get_future();
  require_ready(started, "the first child");
  group.run([] { throw std::logic_error("second child failed"); });
  CHECK_THROWS_AS(group.wait(), std::logic_error);
  CHECK(sibling_saw_cancel);
}

TEST_CASE(
    "task_group: cancel skips unstarted children, reaches running ones, and wait reports it") {
  ctxpool::thread_pool pool{2};
  ctxpool::task_group group{pool};
  std::promise<void> running;
  std::atomic<bool> saw_cancel{false};
  group.run([&] {
    running.set_value();
    const auto give_up = std::chrono::steady_clock::now() + hang_bound;
    while (!ctxpool::this_task::cancelled() && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::yield();
    }
    saw_cancel = ctxpool::this_task::cancelled();
  });
  auto started = running.get_future();
  require_ready(started, "the running child");
  group.cancel();
  CHECK(group.is_cancelling());
  std::atomic<int> late{0};
  group.run([&] { ++late; });  // queued after cancel: skipped
  CHECK(group.wait() == ctxpool::task_group_status::cancelled);
  CHECK(saw_cancel);
  CHECK(late == 0);
  CHECK_FALSE(group.is_cancelling());
}

TEST_CASE("task_group: cancelling an enclosing cancellation cancels the group and its children") {
  ctxpool::thread_pool pool{1};
  busy_workers busy(pool, 1);
  ctxpool::context{}.run([&] {
    ctxpool::cancellation_source request;
    ctxpool::cancellation_scope scope(request);
    ctxpool::task_group group{pool};
    std::atomic<int> ran{0};
    bool saw_cancel = false;
    group.run([&] { ++ran; });
    group.run([&] {
      request.cancel();
      saw_cancel = ctxpool::this_task::cancelled();
    });
    CHECK(group.wait() == ctxpool::task_group_status::cancelled);
    CHECK(saw_cancel);
    CHECK(ran == 0);  // started after the enclosing cancel: skipped
  });
}

TEST_CASE(
    "task_group: groups nest, and recursive groups from workers finish with one or two workers") {
  for (std::size_t workers : {std::size_t{1}, std::size_t{2}}) {
    CAPTURE(workers);
    ctxpool::thread_pool pool{workers};
    std::atomic<int> leaves{0};
    // The root runs on a worker: every wait() below is called from a pool
    // thread, and with one worker a wait() that blocked it would never end.
    auto done = pool.submit([&] { tree(pool, 10, leaves); });
    require_ready(done, "a recursive tree of groups");
    done.get();
    CHECK(leaves == 1024);
  }
}

TEST_CASE(
    "task_group: a child run by the waiter sees no task slot of the waiter, which keeps its own") {
  ctxpool::thread_pool pool{1};
  busy_workers busy(pool, 1);  // every child runs on the waiting thread
  ctxpool::context{}.run([&] {
    ctxpool::slot_wipe_scope waiter_task;  // the waiter is a task itself, as on a worker
    auth_token.set("waiter's token");
    auto token = request_id.set("waiter's request");
    ctxpool::task_group group{pool};
    std::vector<std::thread::id> ran_on(2);
    std::vector<bool> saw_token(2, true);
    for (int i = 0; i < 2; ++i) {
      group.run([&, i] {
        ran_on[i] = std::this_thread::get_id();
        saw_token[i] = auth_token.has_value();
        auth_token.set("child's token");  // left behind: the child's scope wipes it
        request_id.set("child's request");
      });
    }
    group.wait();
    for (int i = 0; i < 2; ++i) {
      CHECK(ran_on[i] == std::this_thread::get_id());
      CHECK_FALSE(saw_token[i]);
    }
    CHECK(auth_token.value() == "waiter's token");
    CHECK(request_id.get() == "waiter's request");
    request_id.reset(token);
  });
  CHECK_FALSE(auth_token.has_value());  // the waiter's own scope wiped its value
}

TEST_CASE("task_group: in residue mode a child run by the waiter is a task for the detector") {
  ctxpool_test::detection_session session;
  ctxpool::thread_pool pool{1};
  busy_workers busy(pool, 1);
  ctxpool::task_group group{pool};
  bool reader_saw_value = true;
  // Run newest first by the waiter: the writer leaves the slot dirty, the
  // reader reads it first. Both run on the waiting thread.
  group.run([&] { reader_saw_value = auth_token.has_value(); });
  group.run([] { auth_token.set("left behind"); });
  group.wait();
  busy.release();
  pool.join();
  CHECK_FALSE(reader_saw_value);  // wiped in production behaviour too
  const auto found = ctxpool::diagnostics::findings();
  REQUIRE(found.size() == 1);
  CHECK(found.front().kind == ctxpool::diagnostics::finding_kind::stale_read);
  CHECK(found.front().variable == "auth_token");
}

TEST_CASE(
    "task_group: a group destroyed unwaited skips what has not started and reports the exception") {
  ctxpool::thread_pool pool{1};
  std::mutex mutex;
  std::vector<std::string> reported;
  pool.set_exception_handler([&](std::exception_ptr error, const ctxpool::task_info&) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex);
      reported.emplace_back(e.what());
    }
  });
  std::atomic<int> ran{0};
  {
    busy_workers busy(pool, 1);
    ctxpool::task_group group{pool};
    group.run([] { throw std::runtime_error("nobody waited"); });
    // Not waited: the destructor cancels; the queued child is skipped.
    group.run([&] { ++ran; });
  }
  {
    ctxpool::task_group group{pool};
    std::promise<void> started;
    group.run([&] {
      started.set_value();
      throw std::runtime_error("thrown while the group was being destroyed");
    });
    auto future = started.get_future();
    require_ready(future, "the running child");
  }
  CHECK(ran == 0);
  std::lock_guard lock(mutex);
  REQUIRE(reported.size() == 1);
  CHECK(reported.front() == "thrown while the group was being destroyed");
}

TEST_CASE(
    "task_group: on a worker, children queued on its deque are stolen by others while the waiter "
    "runs its own") {
  ctxpool::thread_pool pool{2};
  auto done = pool.submit([&] {
    ctxpool::task_group group{pool};
    std::atomic<int> arrived{0};
    std::vector<std::thread::id> ran_on(2);
    // Each child waits for the other: they finish only if one runs on the
    // waiting worker and the other is stolen from its deque by the second.
    for (int i = 0; i < 2; ++i) {
      group.run([&, i] {
        ran_on[i] = std::this_thread::get_id();
        ++arrived;
        spin_until([&] { return arrived.load() >= 2; }, "the sibling's theft");
      });
    }
    CHECK(group.wait() == ctxpool::task_group_status::complete);
    CHECK(ran_on[0] != ran_on[1]);
    // The waiter took the newest itself.
    CHECK(ran_on[1] == std::this_thread::get_id());
  });
  require_ready(done, "a group whose children wait for each other");
  done.get();
}

TEST_CASE("task_group: a group on a worker can go right after wait while stolen children end") {
  // Run under ASan: a child that touched its group after counting itself
  // finished would touch freed memory here.
  ctxpool::thread_pool pool{2};
  auto done = pool.submit([&] {
    for (int round = 0; round < 2000; ++round) {
      auto group = std::make_unique<ctxpool::task_group>(pool);
      std::atomic<int> ran{0};
      for (int i = 0; i < 4; ++i) group->run([&] { ++ran; });
      group->wait();
      REQUIRE(ran == 4);
      group.reset();
    }
  });
  require_ready(done, "groups destroyed right after wait");
  done.get();
}

TEST_CASE("task_group: one worker, a deep tree of groups and more children than its deque holds") {
  ctxpool::thread_pool pool{1};
  std::atomic<int> leaves{0};
  auto tree_done = pool.submit([&] { tree(pool, 14, leaves); });
  require_ready(tree_done, "a depth-14 tree on one worker");
  tree_done.get();
  CHECK(leaves == (1 << 14));
  // Past the deque's capacity the children go through the pool's shared
  // queue; the waiter, the only worker, still runs every one.
  std::atomic<int> ran{0};
  auto wide_done = pool.submit([&] {
    ctxpool::task_group group{pool};
    for (int i = 0; i < 1000; ++i) group.run([&] { ++ran; });
    group.wait();
  });
  require_ready(wide_done, "1000 children of a group on one worker");
  wide_done.get();
  CHECK(ran == 1000);
}

TEST_CASE("task_group: another group's child that a waiter takes back still reaches its waiter") {
  // P's waiter, its child running elsewhere, takes the oldest task of the
  // other workers' deques: Q's child q1, which is not P's work. q1 must stay
  // where Q's waiter finds it: every other worker is busy (p1 waits for q1),
  // so on the pool's queue alone it would never run.
  ctxpool::thread_pool pool{3};
  std::atomic<bool> p1_started{false};
  std::atomic<bool> q2_started{false};
  std::atomic<bool> q1_done{false};
  const auto wait_until = [](const std::atomic<bool>& flag, const char* what) {
    spin_until([&] { return flag.load(); }, what);
  };
  auto p = pool.submit([&] {
    ctxpool::task_group group{pool};
    group.run([&] {
      p1_started = true;
      wait_until(q1_done, "q1");
    });
    // p1 goes to an idle worker; wait() starts once Q has queued q1.
    wait_until(p1_started, "p1's start");
    wait_until(q2_started, "q2's start");
    group.wait();
  });
  wait_until(p1_started, "p1's start");
  auto q = pool.submit([&] {
    ctxpool::task_group group{pool};
    group.run([&] { q1_done = true; });
    group.run([&] {
      q2_started = true;
      std::this_thread::sleep_for(50ms);  // P's waiter looks at this deque meanwhile
    });
    group.wait();
  });
  require_ready(q, "Q, whose child P's waiter took back");
  require_ready(p, "P, whose child waits for Q's");
  q.get();
  p.get();
  CHECK(q1_done);
}

TEST_CASE("task_group: run() from another thread while the owner waits adds a child it waits for") {
  // The first child ends only once the other thread's child has run, so
  // wait() must see that child. The group goes right after wait(), perhaps
  // while the other thread's run() is still inside it: run() holds a count
  // on the group until it is done (a narrow window: under TSan or ASan a
  // touch of the destroyed group would show, in some runs).
  ctxpool::thread_pool pool{2};
  for (int round = 0; round < 200; ++round) {
    std::atomic<bool> added_ran{false};
    std::thread other;
    {
      ctxpool::task_group group{pool};
      group.run([&] { spin_until([&] { return added_ran.load(); }, "the other thread's child"); });
      other = std::thread([&] { group.run([&] { added_ran = true; }); });
      group.wait();
    }
    other.join();
    REQUIRE(added_ran);
  }
}

TEST_CASE("task_group: independent trees on every worker at once all finish") {
  // The shape of a server whose requests each fork-join on the pool: the
  // waiters' steal-backs meet other trees' children all the time ("another
  // group's child that a waiter takes back" makes one such meeting
  // deterministic); every tree must end, every leaf once.
  ctxpool::thread_pool pool{3};
  for (int round = 0; round < 40; ++round) {
    constexpr int trees = 6;
    constexpr int depth = 7;
    std::atomic<int> leaves{0};
    std::vector<std::future<void>> done;
    for (int t = 0; t < trees; ++t) done.push_back(pool.submit([&] { tree(pool, depth, leaves); }));
    for (auto& d : done) require_ready(d, "independent trees of groups on 3 workers");
    for (auto& d : done) d.get();
    REQUIRE(leaves == trees * (1 << depth));
  }
}

TEST_CASE("task_group: a child that submits to the pool with one worker does not deadlock it") {
  ctxpool::thread_pool pool{1};
  auto done = pool.submit([&] {
    ctxpool::task_group group{pool};
    std::future<int> inner;
    std::atomic<int> first_ran{0};
    // The submitted task lands on the worker's deque above the group's
    // second child: the waiter runs both.
    group.run([&] { ++first_ran; });
    group.run([&] { inner = pool.submit([] { return 7; }); });
    group.wait();
    CHECK(first_ran == 1);
    return inner.get();
  });
  require_ready(done, "a group whose child submits");
  CHECK(done.get() == 7);
}

TEST_CASE("task_group: work a child starts, and groups nested in it, carry the group's cancel") {
  ctxpool::thread_pool pool{2};
  ctxpool::task_group group{pool};
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::future<bool> submitted_saw;
  std::atomic<bool> nested_saw{false};
  std::atomic<int> nested_ran{0};
  std::promise<void> ready;
  group.run([&] {
    // Started before any cancel: the group's cancellation is not made yet.
    submitted_saw = pool.submit([released] {
      if (released.wait_for(hang_bound) != std::future_status::ready) std::abort();
      return ctxpool::this_task::cancelled();
    });
    ctxpool::task_group nested{pool};
    ready.set_value();
    if (released.wait_for(hang_bound) != std::future_status::ready) std::abort();
    nested.run([&] { nested_saw = ctxpool::this_task::cancelled(); });
    nested.run([&] { ++nested_ran; });
    CHECK(nested.is_cancelling() == false);
    (void)nested.wait();
  });
  auto ready_future = ready.get_future();
  require_ready(ready_future, "the first child");
  group.cancel();
  release.set_value();
  CHECK(group.wait() == ctxpool::task_group_status::cancelled);
  require_ready(submitted_saw, "the submitted task");
  CHECK(submitted_saw.get());  // the task a child submitted sees the group's cancel
  CHECK(nested_ran == 0);      // a nested group stops starting children too
  CHECK_FALSE(nested_saw);
}

TEST_CASE("parallel_for: every index exactly once, on the caller and the workers") {
  ctxpool::thread_pool pool{2};
  std::vector<std::atomic<int>> visits(10'007);
  ctxpool::parallel_for(pool, 0, static_cast<int>(visits.size()), [&](int i) { ++visits[i]; });
  for (auto& v : visits) REQUIRE(v.load() == 1);
  // An empty or reversed range calls nothing.
  ctxpool::parallel_for(pool, 5, 5, [](int) { FAIL("called on an empty range"); });
  ctxpool::parallel_for(pool, 5, 3, [](int) { FAIL("called on a reversed range"); });
}

TEST_CASE("parallel_for: a container overload, an explicit grain, and the caller's context") {
  ctxpool::thread_pool pool{2};
  ctxpool::context{}.run([&] {
    auto token = request_id.set("batch-7");
    std::vector<std::string> items(1000);
    ctxpool::parallel_for(
        pool, items,
        [](std::string& item) {
          item = request_id.get();
          (void)request_id.set("index");  // stays in the runner's copy
        },
        16);
    for (const auto& item : items) REQUIRE((item == "batch-7" || item == "index"));
    // Each runner (at most one per worker, plus the caller) starts in a
    // fresh copy: its first index sees the caller's value, its next ones
    // what that index set.
    const auto fresh = std::count(items.begin(), items.end(), "batch-7");
    CHECK(fresh >= 1);
    CHECK(fresh <= 3);
    CHECK(request_id.get() == "batch-7");
    request_id.reset(token);
  });
}

TEST_CASE("parallel_for: the first exception is rethrown and no step starts after it") {
  ctxpool::thread_pool pool{1};
  busy_workers busy(pool, 1);  // the caller runs every index, ten at a time
  std::atomic<int> calls{0};
  int calls_at_throw = -1;
  CHECK_THROWS_AS(ctxpool::parallel_for(
                      pool, 0, 100,
                      [&](int) {
                        if (++calls == 15) {
                          calls_at_throw = calls;
                          throw std::out_of_range("the fifteenth call");
                        }
                      },
                      10),
                  std::out_of_range);
  // The rest of the throwing step and every later one were skipped.
  CHECK(calls_at_throw == 15);
  CHECK(calls == calls_at_throw);
}

TEST_CASE("parallel_for: the indices of a participant held up in one index are taken by others") {
  // Whoever gets index 0 holds it until every other index has run, so the
  // rest of its part must be taken from it, whichever thread it is.
  ctxpool::thread_pool pool{2};
  constexpr int count = 1000;
  std::vector<std::atomic<int>> visits(count);
  std::atomic<int> others{0};
  ctxpool::parallel_for(
      pool, 0, count,
      [&](int i) {
        ++visits[i];
        if (i != 0) {
          ++others;
          return;
        }
        spin_until([&] { return others >= count - 1; }, "every index around the held one");
      },
      1);
  for (auto& v : visits) REQUIRE(v.load() == 1);
}

TEST_CASE("parallel_for: a pool of four runs the loop four wide, whatever the cores") {
  // Users size a pool above the cores for work that blocks: every worker,
  // with the caller in one worker's place, must be inside the loop at once.
  ctxpool::thread_pool pool{4};
  std::atomic<int> inside{0};
  ctxpool::parallel_for(
      pool, 0, 4,
      [&](int) {
        ++inside;
        spin_until([&] { return inside >= 4; }, "4 runners inside the loop at once");
      },
      1);
  CHECK(inside == 4);
}

TEST_CASE("parallel_for: on a worker, every index once, also with the other workers busy") {
  ctxpool::thread_pool pool{2};
  std::vector<std::atomic<int>> visits(5000);
  const auto loop = [&] {
    ctxpool::parallel_for(pool, std::size_t{0}, visits.size(), [&](std::size_t i) { ++visits[i]; });
  };
  auto done = pool.submit(loop);
  require_ready(done, "a parallel_for on a worker");
  done.get();
  for (auto& v : visits) REQUIRE(v.load() == 1);
  {
    busy_workers busy(pool, 1);  // the worker that calls it is the only one free
    auto alone = pool.submit(loop);
    require_ready(alone, "a parallel_for on the one free worker");
    alone.get();
  }
  for (auto& v : visits) REQUIRE(v.load() == 2);
}

TEST_CASE("task_group: pool.wait() does not return while a worker's group has children left") {
  // A worker's children are not counted in the pool's work one by one: the
  // task that made the group stands for them until its wait() returns.
  ctxpool::thread_pool pool{2};
  constexpr int children = 64;
  std::atomic<int> ended{0};
  pool.post([&] {
    ctxpool::task_group group{pool};
    for (int i = 0; i < children; ++i) {
      group.run([&] {
        std::this_thread::sleep_for(100us);
        ++ended;
      });
    }
    group.wait();
  });
  auto idle = std::async(std::launch::async, [&] { pool.wait(); });
  require_ready(idle, "pool.wait() with a group running on a worker");
  CHECK(ended == children);
}

TEST_CASE("task_group: a stolen child's exception reaches the waiter, who ran its own meanwhile") {
  ctxpool::thread_pool pool{2};
  auto done = pool.submit([&] {
    for (int round = 0; round < 50; ++round) {
      ctxpool::task_group group{pool};
      std::atomic<int> arrived{0};
      std::thread::id thrower_ran_on;
      std::thread::id newest_ran_on;
      // Each waits for the other, so they run at once on two threads: the
      // newest on the waiter, the oldest stolen by the other worker.
      auto meet = [&arrived] {
        ++arrived;
        spin_until([&] { return arrived.load() >= 2; }, "the two children's meeting");
      };
      group.run([&] {
        thrower_ran_on = std::this_thread::get_id();
        meet();
        throw std::runtime_error("stolen child failed");
      });
      group.run([&] {
        newest_ran_on = std::this_thread::get_id();
        meet();
      });
      CHECK_THROWS_WITH_AS(group.wait(), "stolen child failed", std::runtime_error);
      CHECK(newest_ran_on == std::this_thread::get_id());
      CHECK(thrower_ran_on != std::this_thread::get_id());
      CHECK_FALSE(group.is_cancelling());
    }
  });
  require_ready(done, "groups whose stolen child throws");
  done.get();
}

namespace {

/// Counts its own end, run or destroyed unrun: each child ends exactly once.
struct counted_child {
  std::atomic<int>* ran;
  std::atomic<int>* destroyed;
  bool live = true;
  counted_child(std::atomic<int>& r, std::atomic<int>& d) : ran(&r), destroyed(&d) {}
  counted_child(counted_child&& other) noexcept
      : ran(other.ran), destroyed(other.destroyed), live(std::exchange(other.live, false)) {}
  counted_child& operator=(counted_child&&) = delete;
  ~counted_child() {
    if (live) ++*destroyed;
  }
  void operator()() const {
    ++*ran;
    std::this_thread::yield();
  }
};

}  // namespace

TEST_CASE("task_group: a cancel racing with steals skips the rest, and every child ends once") {
  ctxpool::thread_pool pool{2};
  auto done = pool.submit([&] {
    for (int round = 0; round < 100; ++round) {
      constexpr int children = 200;
      std::atomic<int> ran{0};
      std::atomic<int> destroyed{0};
      ctxpool::task_group group{pool};
      for (int i = 0; i < children / 2; ++i) group.run(counted_child{ran, destroyed});
      // Cancelled from a child while the other worker steals and the waiter
      // has not started: some children run, the rest are skipped.
      group.run([&group] { group.cancel(); });
      for (int i = 0; i < children / 2; ++i) group.run(counted_child{ran, destroyed});
      CHECK(group.wait() == ctxpool::task_group_status::cancelled);
      CHECK(destroyed == children);
      CHECK(ran <= children);
      // Usable again, and complete this time.
      group.run(counted_child{ran, destroyed});
      CHECK(group.wait() == ctxpool::task_group_status::complete);
      CHECK(destroyed == children + 1);
    }
  });
  require_ready(done, "cancelled groups whose children are being stolen");
  done.get();
}

TEST_CASE("task_group: children that add children to their own group, on the waiter and thieves") {
  // The owner's children and those that children queue (on other workers)
  // are counted apart; wait() returns once all have ended.
  ctxpool::thread_pool pool{2};
  auto done = pool.submit([&] {
    for (int round = 0; round < 200; ++round) {
      ctxpool::task_group group{pool};
      std::atomic<int> ran{0};
      for (int i = 0; i < 8; ++i) {
        group.run([&] {
          ++ran;
          for (int j = 0; j < 4; ++j) group.run([&] { ++ran; });
        });
      }
      group.wait();
      REQUIRE(ran == 8 * 5);
    }
  });
  require_ready(done, "groups whose children add children");
  done.get();
}

TEST_CASE("task_group: an outside waiter's nested groups finish while every worker is busy") {
  ctxpool::thread_pool pool{1};
  busy_workers busy(pool, 1);  // only the waiting thread can run the children
  std::atomic<int> leaves{0};
  auto done = std::async(std::launch::async, [&] {
    tree(pool, 6, leaves);  // groups nested in children this thread runs
    return std::this_thread::get_id();
  });
  require_ready(done, "nested groups waited for outside the pool");
  done.get();
  CHECK(leaves == 64);
}

TEST_CASE(
    "task_group: pool.wait() waits for the children of a group that outlives its maker's task") {
  // Made on the heap by a task that then ends: its children queued on the
  // worker's deque must count as the pool's work, or wait() would return
  // with them still queued.
  ctxpool::thread_pool pool{2};
  constexpr int children = 16;
  std::unique_ptr<ctxpool::task_group> group;
  std::atomic<int> ended{0};
  auto made = pool.submit([&] {
    group = std::make_unique<ctxpool::task_group>(pool);
    for (int i = 0; i < children; ++i) {
      group->run([&] {
        std::this_thread::sleep_for(200us);
        ++ended;
      });
    }
  });
  require_ready(made, "the task that makes the group");
  made.get();
  auto idle = std::async(std::launch::async, [&] { pool.wait(); });
  require_ready(idle, "pool.wait() with a heap group's children queued");
  CHECK(ended == children);
  // Waited from this thread, after its maker's last run().
  CHECK(group->wait() == ctxpool::task_group_status::complete);
}
