// Tests of <ctxpool/thread_local.hpp>: per-thread slots, the end-of-task wipe,
// lifetimes, local_stack, watched thread_locals, and the residue observer hooks.
#include <ctxpool/thread_local.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using ctxpool::lifetime;
using ctxpool::local_stack;
using ctxpool::slot_wipe_scope;
using ctxpool::thread_local_var;

struct counted {
  static inline std::atomic<int> live{0};
  counted() { ++live; }
  counted(const counted&) { ++live; }
  counted& operator=(const counted&) = default;
  ~counted() { --live; }
};

// Records what the context layer tells an observer, to check the hook contract.
struct recording_observer final : ctxpool::residue_observer {
  std::vector<std::string> read_first, left_dirty, residues;
  std::vector<int> read_first_lines, left_dirty_lines;
  std::vector<unsigned> scope_ends;
  void on_read_first(const ctxpool::slot_view& slot, std::source_location where) noexcept override {
    read_first.emplace_back(slot.name);
    read_first_lines.push_back(static_cast<int>(where.line()));
  }
  void on_left_dirty(const ctxpool::slot_view& slot,
                     std::source_location last_write) noexcept override {
    left_dirty.emplace_back(slot.name);
    left_dirty_lines.push_back(static_cast<int>(last_write.line()));
  }
  void on_watched_residue(const ctxpool::slot_view& slot) noexcept override {
    residues.emplace_back(slot.name);
  }
  void on_task_slots_end(unsigned depth) noexcept override { scope_ends.push_back(depth); }
};

struct observer_installed {
  explicit observer_installed(recording_observer& o) { ctxpool::set_residue_observer(&o); }
  ~observer_installed() { ctxpool::set_residue_observer(nullptr); }
};

}  // namespace

TEST_CASE("each thread sees its own value of a thread_local_var") {
  thread_local_var<std::string> token{"auth_token"};
  token.set("main");
  std::string other_before = "unset";
  std::thread([&] {
    other_before = token.value_or("none");
    token.set("worker");
  }).join();
  CHECK(other_before == "none");
  CHECK(token.value() == "main");
  CHECK(token.name() == "auth_token");
  CHECK(token.life() == lifetime::task);
}

TEST_CASE("value() throws lookup_error naming the variable; value_or and has_value do not") {
  thread_local_var<int> slot{"request_number"};
  CHECK_FALSE(slot.has_value());
  CHECK(slot.value_or(4) == 4);
  CHECK_THROWS_WITH_AS((void)slot.value(), doctest::Contains("request_number"),
                       ctxpool::lookup_error);
  slot.set(3);
  CHECK(slot.has_value());
  slot.value() += 1;  // value() is a reference to this thread's value
  CHECK(slot.value() == 4);
  slot.reset();
  CHECK_FALSE(slot.has_value());
  CHECK(slot.emplace(9) == 9);
}

// Code written against 0.2 still builds (with a deprecation warning) and
// still gets the wipe.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
TEST_CASE("the old name task_slot_scope still marks a task") {
  thread_local_var<std::string> token{"auth_token"};
  {
    ctxpool::task_slot_scope task;
    token.set("task value");
  }
  CHECK_FALSE(token.has_value());
}
#pragma GCC diagnostic pop

TEST_CASE("lifetime::task values written inside a task scope are wiped when it ends") {
  thread_local_var<std::string> token{"auth_token"};
  token.set("written outside any task");  // e.g. by a thread-start hook: not wiped
  thread_local_var<counted> resource{"resource"};
  {
    slot_wipe_scope task;
    resource.set(counted{});
    CHECK(counted::live == 1);
    CHECK(token.value() == "written outside any task");
  }
  CHECK_FALSE(resource.has_value());
  CHECK(counted::live == 0);
  CHECK(token.value() == "written outside any task");
  {
    slot_wipe_scope task;
    token.set("task value");
  }
  CHECK_FALSE(token.has_value());
}

TEST_CASE("the wipe also runs when the task ends by an exception") {
  thread_local_var<int> slot{"slot"};
  try {
    slot_wipe_scope task;
    slot.set(1);
    throw std::runtime_error("task failed");
  } catch (const std::runtime_error&) {
  }
  CHECK_FALSE(slot.has_value());
}

TEST_CASE("lifetime::thread values survive tasks and die with their thread") {
  thread_local_var<counted> conn{"conn", lifetime::thread};
  std::thread([&] {
    for (int i = 0; i < 3; ++i) {
      slot_wipe_scope task;
      if (!conn.has_value()) conn.set(counted{});
      CHECK(counted::live == 1);
    }
    CHECK(conn.has_value());
  }).join();
  CHECK(counted::live == 0);  // destroyed at thread exit
}

TEST_CASE("nested task scopes wipe what was first written inside them") {
  thread_local_var<int> outer_slot{"outer"};
  thread_local_var<int> inner_slot{"inner"};
  {
    slot_wipe_scope outer;
    outer_slot.set(1);
    {
      slot_wipe_scope inner;  // a task run inline inside another
      inner_slot.set(2);
      CHECK(outer_slot.value() == 1);
    }
    CHECK_FALSE(inner_slot.has_value());
    CHECK(outer_slot.value() == 1);
  }
  CHECK_FALSE(outer_slot.has_value());
}

TEST_CASE("local_stack is a per-thread stack, wiped after the task") {
  local_stack<std::string> requests{"requests"};
  CHECK(requests.size() == 0);
  CHECK(requests.top() == nullptr);
  CHECK_FALSE(requests.pop().has_value());
  {
    slot_wipe_scope task;
    requests.push("GET /a");
    requests.push("GET /b");
    REQUIRE(requests.top() != nullptr);
    CHECK(*requests.top() == "GET /b");
    CHECK(requests.size() == 2);
    std::thread([&] { CHECK(requests.empty()); }).join();
    CHECK(requests.pop() == "GET /b");
    CHECK(requests.size() == 1);
  }
  CHECK(requests.empty());
}

TEST_CASE("a watched plain thread_local is restored after each task") {
  static thread_local std::string legacy_user;
  auto watch =
      ctxpool::watch_thread_local("legacy_user", []() -> std::string& { return legacy_user; });
  {
    slot_wipe_scope task;
    legacy_user = "alice";
  }
  CHECK(legacy_user.empty());
  static thread_local int legacy_depth = 5;
  auto depth_watch = ctxpool::watch_thread_local(
      "legacy_depth", []() -> int& { return legacy_depth; }, 5);
  {
    slot_wipe_scope task;
    legacy_depth = 9;
  }
  CHECK(legacy_depth == 5);
  // After the watch is gone the variable is left alone.
  { auto doomed = std::move(depth_watch); }
  {
    slot_wipe_scope task;
    legacy_depth = 11;
  }
  CHECK(legacy_depth == 11);
  legacy_depth = 5;
}

TEST_CASE("with an observer, a task's first read and the value it leaves are reported") {
  recording_observer observer;
  observer_installed installed{observer};
  thread_local_var<std::string> token{"auth_token"};
  thread_local_var<int> cache{"cache", lifetime::thread};

  int write_line = 0;
  {
    slot_wipe_scope first_task;
    write_line = __LINE__ + 1;
    token.set("secret");
    CHECK(token.value() == "secret");  // read after its own write: not a first read
    cache.set(1);                      // lifetime::thread: never reported
    (void)cache.value();
  }
  CHECK(observer.read_first.empty());
  REQUIRE(observer.left_dirty == std::vector<std::string>{"auth_token"});
  CHECK(observer.left_dirty_lines[0] == write_line);
  {
    slot_wipe_scope second_task;
    const int line = __LINE__ + 1;
    CHECK_FALSE(token.has_value());           // behaves as in production: the value is gone
    CHECK(token.value_or("none") == "none");  // a second read in the same task is not first
    REQUIRE(observer.read_first == std::vector<std::string>{"auth_token"});
    CHECK(observer.read_first_lines[0] == line);
  }
  CHECK(observer.left_dirty.size() == 1);  // the second task left nothing
  {
    slot_wipe_scope third_task;
    token.set("x");
    token.reset();  // reset by the task itself: nothing left behind
  }
  {
    slot_wipe_scope fourth_task;
    token.reset();  // a reset first is a write: the read after it is not first
    CHECK_FALSE(token.has_value());
  }
  CHECK(observer.read_first.size() == 1);
  CHECK(observer.left_dirty.size() == 1);
  CHECK(observer.scope_ends == std::vector<unsigned>{1, 1, 1, 1});
}

TEST_CASE("with an observer, any first access to a local_stack counts, a push included") {
  recording_observer observer;
  observer_installed installed{observer};
  local_stack<int> requests{"requests"};
  {
    slot_wipe_scope task;
    requests.push(1);  // lands on whatever an earlier task left: reported
    CHECK(requests.size() == 1);
    (void)requests.pop();
  }
  CHECK(observer.read_first == std::vector<std::string>{"requests"});
  CHECK(observer.left_dirty.empty());  // popped: left empty
  {
    slot_wipe_scope task;
    requests.push(2);  // left non-empty
  }
  CHECK(observer.read_first.size() == 2);
  CHECK(observer.left_dirty == std::vector<std::string>{"requests"});
}

TEST_CASE("with an observer, a nested task's accesses are its own and the outer task's stay") {
  recording_observer observer;
  observer_installed installed{observer};
  thread_local_var<int> depth{"depth"};
  {
    slot_wipe_scope outer;
    depth.set(1);
    {
      slot_wipe_scope inner;          // a task run inline inside another
      CHECK(depth.value_or(0) == 1);  // first read of the inner task (the outer's value is there)
    }
    CHECK(depth.value() == 1);  // the outer task read its own write: not reported
  }
  CHECK(observer.read_first == std::vector<std::string>{"depth"});
  CHECK(observer.scope_ends == std::vector<unsigned>{2, 1});
}

TEST_CASE("outside any task scope nothing is reported, even with an observer") {
  recording_observer observer;
  observer_installed installed{observer};
  thread_local_var<std::string> token{"auth_token"};
  token.set("set by the thread's own setup");
  CHECK(token.value() == "set by the thread's own setup");
  CHECK(observer.read_first.empty());
  CHECK(observer.left_dirty.empty());
  token.reset();
}

TEST_CASE("with an observer, a watched thread_local left changed is reported as residue") {
  recording_observer observer;
  observer_installed installed{observer};
  static thread_local int legacy = 0;
  auto watch = ctxpool::watch_thread_local("legacy", []() -> int& { return legacy; });
  {
    slot_wipe_scope task;
    legacy = 1;
  }
  { slot_wipe_scope clean_task; }
  CHECK(observer.residues == std::vector<std::string>{"legacy"});
  CHECK(legacy == 0);
}

TEST_CASE("without an observer at the start of a task, nothing is reported for it") {
  thread_local_var<std::string> token{"auth_token"};
  recording_observer observer;
  {
    slot_wipe_scope task;  // began before the observer was installed
    observer_installed installed{observer};
    CHECK_FALSE(token.has_value());
    token.set("secret");
  }
  CHECK(observer.read_first.empty());
  CHECK(observer.left_dirty.empty());
  CHECK(observer.scope_ends.empty());
}
