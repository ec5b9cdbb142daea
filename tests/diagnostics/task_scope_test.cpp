// Tests of <ctxpool/diagnostics/task_scope.hpp>: marking tasks in a
// hand-written worker loop.
#include <ctxpool/diagnostics/task_scope.hpp>

#include <doctest/doctest.h>

#include <string>
#include <thread>

#include <ctxpool/context.hpp>
#include <ctxpool/diagnostics.hpp>
#include <ctxpool/thread_local.hpp>

#include "support.hpp"

namespace diag = ctxpool::diagnostics;
using ctxpool_test::detection_session;

namespace {
ctxpool::thread_local_var<int> scratch{"scratch"};
ctxpool::context_var<std::string> tenant{"tenant"};
}  // namespace

TEST_CASE("with detection off: no id, but the wipe happens") {
  diag::disable();
  {
    diag::task_scope task{"job"};
    CHECK(task.id() == 0);
    scratch.set(1);
  }
  CHECK_FALSE(scratch.has_value());
  CHECK(diag::findings().empty());
}

TEST_CASE("with detection on: ids, and a stale read of what the earlier task left") {
  detection_session session;
  std::uint64_t first = 0;
  {
    diag::task_scope task{"job"};
    first = task.id();
    CHECK(first != 0);
    scratch.set(1);
  }
  {
    diag::task_scope task{"job"};
    CHECK(task.id() > first);
    CHECK_FALSE(scratch.has_value());
  }
  const auto found = diag::findings();
  REQUIRE(found.size() == 1);
  CHECK(found.front().writer.id == first);
}

TEST_CASE("the task runs in a fresh copy of the thread's current context") {
  const auto outer = tenant.set("acme");
  {
    diag::task_scope task{"job"};
    CHECK(tenant.get() == "acme");  // sees the worker's context
    (void)tenant.set("other");      // but its own sets stay inside
  }
  CHECK(tenant.get() == "acme");
}

TEST_CASE("scopes nest; a task run inline reading its dispatcher's thread-local is reported") {
  detection_session session;
  {
    diag::task_scope outer{"outer"};
    scratch.set(1);
    {
      diag::task_scope inner{"inner"};
      CHECK(inner.id() > outer.id());
      // Inline, it sees the outer task's live value; queued (or on another
      // worker) it would see nothing or another task's: the inner task's first
      // access is a read of a slot the outer task leaves dirty.
      CHECK(scratch.value() == 1);
    }
    CHECK(scratch.value() == 1);  // the outer task reading its own write: clean
  }
  const auto found = diag::findings();
  REQUIRE(found.size() == 1);
  CHECK(found.front().task.name == "inner");
  CHECK(found.front().writer.name == "outer");
}

TEST_CASE("the name is copied") {
  detection_session session;
  std::thread t([] {
    {
      std::string name = "temporary-name";
      diag::task_scope task{name};
      name.assign("overwritten-----------------");
      scratch.set(1);
    }
    diag::task_scope next{"next"};
    (void)scratch.has_value();
  });
  t.join();
  const auto found = diag::findings();
  REQUIRE(found.size() == 1);
  CHECK(found.front().writer.name == "temporary-name");
}
