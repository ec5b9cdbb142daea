// Tests of <ctxpool/diagnostics.hpp>: the schedule-independent model (tasks
// leaving a slot dirty, tasks reading it first, whatever threads), reads
// across a coroutine suspension, residue, false positives, deduplication,
// suppressions, on/off. Tasks run on hand-written workers marked with
// diagnostics::task_scope (the same hooks the thread_pool drives).
#include <ctxpool/diagnostics.hpp>

#include <doctest/doctest.h>

#include <string>
#include <thread>

#include <ctxpool/context.hpp>
#include <ctxpool/thread_local.hpp>

#include "support.hpp"

namespace diag = ctxpool::diagnostics;
using ctxpool_test::detection_session;
using ctxpool_test::worker;

namespace {

ctxpool::thread_local_var<std::string> auth_token{"auth_token"};
ctxpool::thread_local_var<int> connection{"connection", ctxpool::lifetime::thread};
ctxpool::local_stack<int> request_stack{"request_stack"};

thread_local std::string legacy_user;  // a plain thread_local the code cannot change

/// What the pool does for each step of a coroutine: a task of its own, run in
/// a continuation of the coroutine's context (same lineage), its slot scope
/// ending before the task does.
template <class Body>
void coroutine_step(const ctxpool::detail::captured_context& coroutine, const char* name,
                    Body&& body) {
  ctxpool::task_observer* observer = diag::pool_observer();
  REQUIRE(observer != nullptr);
  ctxpool::detail::fresh_context_scope resumed(coroutine, /*continuation=*/true);
  const ctxpool::task_info info{diag::next_task_id(), std::source_location::current(), name};
  observer->on_task_begin(info);
  {
    ctxpool::slot_wipe_scope slots;
    body();
  }
  observer->on_task_end(info);
}

std::vector<diag::finding> of_kind(diag::finding_kind kind) {
  std::vector<diag::finding> result;
  for (auto& f : diag::findings()) {
    if (f.kind == kind) result.push_back(f);
  }
  return result;
}

}  // namespace

TEST_CASE("off: nothing installed, no ids, no findings") {
  diag::disable();
  CHECK_FALSE(diag::enabled());
  CHECK(diag::pool_observer() == nullptr);
  CHECK(ctxpool::get_residue_observer() == nullptr);
  CHECK(diag::current_options().mode == diag::mode::off);
  worker w;
  w.run("login", [] { auth_token.set("secret"); });
  bool seen = true;
  w.run("anonymous", [&] { seen = auth_token.has_value(); });
  CHECK_FALSE(seen);  // wiped all the same
  CHECK(diag::findings().empty());
}

TEST_CASE("enable installs the observers; disable removes them") {
  diag::disable();
  {
    detection_session session;
    CHECK(diag::enabled());
    CHECK(diag::pool_observer() != nullptr);
    CHECK(ctxpool::get_residue_observer() != nullptr);
    CHECK(diag::current_options().mode == diag::mode::residue);
  }
  CHECK_FALSE(diag::enabled());
  CHECK(ctxpool::get_residue_observer() == nullptr);
}

TEST_CASE("next_task_id is unique and increasing") {
  const auto a = diag::next_task_id();
  const auto b = diag::next_task_id();
  CHECK(a >= 1);
  CHECK(b > a);
}

TEST_CASE(
    "a task reading first a slot an earlier task left dirty is a stale read, with the details") {
  detection_session session;
  worker w;
  // Each site is taken on the line before the statement it marks.
  std::source_location write_site;
  std::source_location read_site;
  w.run("login", [&] {
    write_site = std::source_location::current();
    auth_token.set("alice-token");
  });
  w.run("health-check", [] {});
  w.run("metrics", [] {});
  bool seen = true;
  const auto reader_submit = std::source_location::current();
  w.run("anonymous", [&] {
    read_site = std::source_location::current();
    seen = auth_token.has_value();
  });
  CHECK_FALSE(seen);  // the read behaves as in production: the value is gone

  const auto found = diag::findings();
  REQUIRE(found.size() == 1);
  const diag::finding& f = found.front();
  CHECK(f.kind == diag::finding_kind::stale_read);
  CHECK(f.variable == "auth_token");
  CHECK(f.type == "std::string");
  CHECK(f.task.name == "anonymous");
  CHECK(f.task.id != 0);
  CHECK(f.task.submit_site.line() == reader_submit.line() + 1);
  CHECK(f.site.line() == read_site.line() + 1);
  CHECK(std::string(f.site.file_name()) == read_site.file_name());
  CHECK(f.writer.name == "login");
  CHECK(f.writer.id != 0);
  CHECK(f.writer.id < f.task.id);
  CHECK(f.write_site.line() == write_site.line() + 1);
  CHECK(f.left_dirty == 1);
  CHECK(f.thread != 0);
  CHECK(f.count == 1);
  CHECK_FALSE(f.same_context);

  const std::string text = diag::format_finding(f);
  CHECK(text.find("ERROR: ctxpool: stale-read of 'auth_token' (std::string)") != std::string::npos);
  CHECK(text.find("\"anonymous\"") != std::string::npos);
  CHECK(text.find("\"login\"") != std::string::npos);
  CHECK(text.find("1 task(s) had left it so") != std::string::npos);
  CHECK(text.find("alice-token") == std::string::npos);  // values are never printed
  CHECK(text.find("silence this: stale-read:auth_token)") != std::string::npos);
}

TEST_CASE(
    "every read form counts as a first read: value, value_or, has_value, top, pop, size, empty") {
  detection_session session;
  worker w;
  w.run("writer", [] { auth_token.set("t"); });
  // Each reader's first access is a different read form: one finding each.
  w.run("value", [] { CHECK_THROWS_AS((void)auth_token.value(), ctxpool::lookup_error); });
  w.run("value_or", [] { CHECK(auth_token.value_or("none") == "none"); });
  w.run("has_value", [] { CHECK_FALSE(auth_token.has_value()); });
  CHECK(diag::findings().size() == 3);
  diag::clear_findings();

  w.run("leaves-a-frame", [] { request_stack.push(1); });
  w.run("top", [] { CHECK(request_stack.top() == nullptr); });
  w.run("pop", [] { CHECK_FALSE(request_stack.pop().has_value()); });
  w.run("size", [] { CHECK(request_stack.size() == 0); });
  w.run("empty", [] { CHECK(request_stack.empty()); });
  const auto found = diag::findings();
  // Four read sites, and the push of the task that left the frame: a push
  // onto a stack some task leaves non-empty lands on its leftovers.
  CHECK(found.size() == 5);
  for (const auto& f : found) {
    CHECK(f.kind == diag::finding_kind::stale_read);
    CHECK(f.variable == "request_stack");
  }
}

TEST_CASE("only a task's first access counts: a read after its own write is clean") {
  detection_session session;
  worker w;
  w.run("login", [] { auth_token.set("t"); });
  w.run("reads twice", [] {
    (void)auth_token.has_value();  // first: reported
    (void)auth_token.has_value();  // second: part of the same first-read, not counted
  });
  w.run("writes then reads", [] {
    auth_token.set("mine");
    (void)auth_token.value();
  });
  // Two leaving sites (the login, and the writer that also leaves its value),
  // one reading task: a finding per pair, both naming the reader.
  const auto found = diag::findings();
  REQUIRE(found.size() == 2);
  for (const auto& f : found) {
    CHECK(f.task.name == "reads twice");
    CHECK(f.count == 1);
  }
  CHECK(found.front().writer.name == "login");
  CHECK(found.back().writer.name == "writes then reads");
}

TEST_CASE("schedule independence: reader and leaver on different threads, in either order") {
  detection_session session;
  worker a;
  worker b;
  a.run("login", [] { auth_token.set("t"); });
  bool seen = true;
  b.run("anonymous", [&] { seen = auth_token.has_value(); });
  CHECK_FALSE(seen);  // nothing there on b: an ordinary test would pass here
  REQUIRE(diag::findings().size() == 1);
  diag::clear_findings();

  // The reader first, then the task that leaves the slot dirty.
  b.run("anonymous", [&] { seen = auth_token.has_value(); });
  CHECK(diag::findings().empty());  // nobody left it dirty yet
  a.run("login", [] { auth_token.set("t"); });
  const auto found = diag::findings();
  REQUIRE(found.size() == 1);
  CHECK(found.front().task.name == "anonymous");
  CHECK(found.front().writer.name == "login");
}

TEST_CASE("a stale read is found after a thousand unrelated tasks in between") {
  detection_session session;
  worker a;
  worker b;
  a.run("login", [] { auth_token.set("t"); });
  for (int i = 0; i < 1000; ++i) (i % 2 == 0 ? a : b).run("unrelated", [] {});
  b.run("anonymous", [] { (void)auth_token.value_or(""); });
  REQUIRE(diag::findings().size() == 1);
  CHECK(diag::findings().front().variable == "auth_token");
}

TEST_CASE("identical findings are reported once, with a count") {
  detection_session session;
  worker w;
  auto write = [] { auth_token.set("t"); };
  auto read = [] { (void)auth_token.has_value(); };
  for (int i = 0; i < 4; ++i) {
    w.run("login", write);
    w.run("anonymous", read);
  }
  const auto found = diag::findings();
  REQUIRE(found.size() == 1);
  CHECK(found.front().count == 4);
}

TEST_CASE("no finding: a task reading what it wrote itself") {
  detection_session session;
  ctxpool::thread_local_var<int> scratch{"scratch"};
  worker w;
  w.run("self", [&] {
    auth_token.set("mine");
    CHECK(auth_token.value() == "mine");
    {
      // An inner scope wipes what it first wrote; reading it back in the
      // same task is not another task's read.
      ctxpool::slot_wipe_scope inner;
      scratch.set(7);
    }
    CHECK_FALSE(scratch.has_value());
  });
  CHECK(diag::findings().empty());
}

TEST_CASE("no finding: lifetime::thread slots are deliberate caches") {
  detection_session session;
  worker w;
  w.run("first", [] { connection.set(42); });
  int seen = 0;
  w.run("second", [&] { seen = connection.value_or(-1); });
  CHECK(seen == 42);
  CHECK(diag::findings().empty());
}

TEST_CASE("no finding: values written outside any task (a thread start hook)") {
  detection_session session;
  ctxpool::thread_local_var<std::string> locale{"locale"};
  std::string seen;
  std::thread t([&] {
    locale.set("en_GB");  // thread start: no task on this thread yet
    {
      diag::task_scope task{"request"};
      seen = locale.value_or("?");
    }
    {
      diag::task_scope task{"request"};
      seen += "," + locale.value_or("?");
    }
  });
  t.join();
  CHECK(seen == "en_GB,en_GB");
  CHECK(diag::findings().empty());
}

TEST_CASE("no finding: the value was reset or rewritten before the read") {
  detection_session session;
  worker w;
  w.run("login", [] { auth_token.set("a"); });
  w.run("careful", [] {
    auth_token.reset();  // a reset first is a write
    CHECK_FALSE(auth_token.has_value());
  });
  w.run("login", [] { auth_token.set("b"); });
  w.run("writes-first", [] {
    auth_token.set("c");
    CHECK(auth_token.value() == "c");
  });
  CHECK(diag::findings().empty());
}

TEST_CASE("no finding: values propagated by context") {
  detection_session session;
  ctxpool::context_var<std::string> user{"user"};
  worker w;
  w.run("a", [&] { (void)user.set("alice"); });
  std::string seen = "x";
  w.run("b", [&] { seen = user.get_or("nobody"); });
  CHECK(seen == "nobody");  // each task_scope runs in a fresh copy of the context
  CHECK(diag::findings().empty());
}

TEST_CASE(
    "a coroutine's later step reading first what its earlier step left: read-across-suspension, on any thread") {
  detection_session session;
  auto spawn = [] {
    diag::task_scope spawner{"co_spawn"};
    return ctxpool::detail::captured_context::capture();
  };
  const auto first_coroutine = spawn();
  auto step = [](const ctxpool::detail::captured_context& coroutine, auto&& body) {
    coroutine_step(coroutine, "coro", body);
  };
  // Resumed on another thread: nothing is there, and it is reported anyway.
  for (int round = 0; round < 3; ++round) {
    std::thread before([&] { step(first_coroutine, [] { auth_token.set("step-1"); }); });
    before.join();
    std::thread after([&] { step(first_coroutine, [] { (void)auth_token.has_value(); }); });
    after.join();
  }
  auto found = diag::take_findings();
  REQUIRE(found.size() == 1);
  CHECK(found.front().kind == diag::finding_kind::read_across_suspension);
  CHECK(found.front().same_context);
  CHECK(found.front().count == 3);  // every time
  CHECK(found.front().variable == "auth_token");
  CHECK(diag::format_finding(found.front()).find("keep this state in a context_var") !=
        std::string::npos);

  // Another coroutine (another lineage) reading first what this one left:
  // an ordinary stale read.
  const auto second_coroutine = spawn();
  std::thread other([&] { step(second_coroutine, [] { (void)auth_token.value_or(""); }); });
  other.join();
  found = diag::take_findings();
  REQUIRE(found.size() == 1);
  CHECK(found.front().kind == diag::finding_kind::stale_read);
  CHECK_FALSE(found.front().same_context);
}

TEST_CASE("no finding: coroutines that write their slot before reading it, whatever they share") {
  detection_session session;
  // Two coroutines spawned from one acceptor continue the acceptor's
  // context; each writes its slot first in every step that reads it.
  const auto acceptor = ctxpool::detail::captured_context::capture();
  auto step = [&](auto&& body) { coroutine_step(acceptor, "conn", body); };
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      step([i] {
        auth_token.set("conn-" + std::to_string(i));
        CHECK(auth_token.value() == "conn-" + std::to_string(i));
      });
    });
  }
  for (auto& t : threads) t.join();
  CHECK(diag::findings().empty());
}

TEST_CASE("nested (inline) tasks are attributed to the innermost task") {
  detection_session session;
  worker w;
  std::uint64_t inner_id = 0;
  std::uint64_t outer_id = 0;
  w.run("outer", [&] {
    {
      diag::task_scope inner{"inline-dispatched"};
      inner_id = inner.id();
      auth_token.set("inner's");  // left dirty by the inner task, not the outer one
    }
  });
  w.run("outer", [&] {
    diag::task_scope inner{"inline-reader"};
    (void)auth_token.has_value();  // the inner task's first read
  });
  const auto found = diag::findings();
  REQUIRE(found.size() == 1);
  CHECK(found.front().writer.id == inner_id);
  CHECK(found.front().writer.name == "inline-dispatched");
  CHECK(found.front().task.name == "inline-reader");
  (void)outer_id;
}

TEST_CASE("no finding: a read outside any task (a thread stop hook) is nobody's first read") {
  detection_session session;
  std::thread t([] {
    {
      diag::task_scope task{"writer"};
      auth_token.set("t");
    }
    (void)auth_token.has_value();
  });
  t.join();
  CHECK(diag::findings().empty());
}

TEST_CASE("a watched plain thread_local left changed is residue naming the task") {
  detection_session session;
  auto watch =
      ctxpool::watch_thread_local("legacy_user", []() -> std::string& { return legacy_user; });
  worker w;
  w.run("leaves-it", [] { legacy_user = "mallory"; });
  std::string seen = "x";
  w.run("next", [&] { seen = legacy_user; });
  CHECK(seen.empty());  // restored
  const auto found = of_kind(diag::finding_kind::residue);
  REQUIRE(found.size() == 1);
  CHECK(found.front().variable == "legacy_user");
  CHECK(found.front().type == "std::string");
  CHECK(found.front().task.name == "leaves-it");
  CHECK(diag::format_finding(found.front()).find("mallory") == std::string::npos);
}

TEST_CASE("suppressions silence matching findings and count them") {
  auto opts = detection_session::quiet();
  opts.suppressions = {{"stale-read", "auth_*"}, {"residue", "*"}, {"leak", "*"}};
  detection_session session(opts);
  worker w;
  for (int i = 0; i < 3; ++i) {
    w.run("login", [] { auth_token.set("t"); });
    w.run("anonymous", [] { (void)auth_token.has_value(); });
  }
  w.run("push", [] { request_stack.push(1); });
  w.run("peek", [] { (void)request_stack.top(); });
  const auto found = diag::findings();
  REQUIRE(found.size() == 2);  // the peek, and the push onto what the push left
  CHECK(found.front().variable == "request_stack");
  CHECK(found.back().variable == "request_stack");
}

TEST_CASE("suppressions match source files by glob") {
  auto opts = detection_session::quiet();
  opts.suppressions = {{"*", "*diagnostics_test.cpp"}};
  detection_session session(opts);
  worker w;
  w.run("login", [] { auth_token.set("t"); });
  w.run("anonymous", [] { (void)auth_token.has_value(); });
  CHECK(diag::findings().empty());
}

TEST_CASE("take_findings withdraws, clear_findings clears") {
  detection_session session;
  worker w;
  auto login = [] { auth_token.set("t"); };
  auto anonymous = [] { (void)auth_token.has_value(); };
  const auto site = std::source_location::current();
  w.run("login", login, site);
  w.run("anonymous", anonymous, site);
  CHECK(diag::take_findings().size() == 1);
  CHECK(diag::findings().empty());
  w.run("login", login, site);
  CHECK(diag::findings().empty());  // a leave alone is no new occurrence of the read
  w.run("anonymous", anonymous, site);
  REQUIRE(diag::findings().size() == 1);
  CHECK(diag::findings().front().count == 1);  // counted from the take
  diag::clear_findings();
  CHECK(diag::findings().empty());
  // Cleared, the model forgot the leave too: a read alone is no finding.
  w.run("anonymous", anonymous, site);
  CHECK(diag::findings().empty());
}

TEST_CASE("findings from many threads at once: deduplicated, every occurrence counted") {
  detection_session session;
  constexpr int threads = 4;
  constexpr int rounds = 50;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([] {
      for (int i = 0; i < rounds; ++i) {
        {
          diag::task_scope writer{"writer"};
          auth_token.set("t");
        }
        diag::task_scope reader{"reader"};
        (void)auth_token.has_value();
      }
    });
  }
  for (auto& t : pool) t.join();
  const auto found = diag::findings();
  REQUIRE(found.size() == 1);
  CHECK(found.front().count == threads * rounds);
}

TEST_CASE("repeats are counted against the right finding after the configuration changes") {
  detection_session session;
  worker w;
  auto write = [] { auth_token.set("t"); };
  auto read = [] { (void)auth_token.has_value(); };
  for (int i = 0; i < 3; ++i) {
    w.run("login", write);
    w.run("anonymous", read);
  }
  REQUIRE(diag::findings().size() == 1);
  CHECK(diag::findings().front().count == 3);

  // New suppressions: the same read is now silenced, not counted.
  auto opts = detection_session::quiet();
  opts.suppressions = {{"stale-read", "auth_token"}};
  diag::enable(opts);
  for (int i = 0; i < 2; ++i) {
    w.run("login", write);
    w.run("anonymous", read);
  }
  REQUIRE(diag::findings().size() == 1);
  CHECK(diag::findings().front().count == 3);

  // Suppressions gone and findings cleared: counted afresh.
  diag::enable(detection_session::quiet());
  diag::clear_findings();
  w.run("login", write);
  w.run("anonymous", read);
  REQUIRE(diag::findings().size() == 1);
  CHECK(diag::findings().front().count == 1);
}

TEST_CASE("repeated residue is one finding with a count; another watch is another finding") {
  detection_session session;
  auto watch =
      ctxpool::watch_thread_local("legacy_user", []() -> std::string& { return legacy_user; });
  worker w;
  auto leave = [] { legacy_user = "mallory"; };
  for (int i = 0; i < 3; ++i) w.run("leaves-it", leave);
  {
    auto found = diag::findings();
    REQUIRE(found.size() == 1);
    CHECK(found.front().count == 3);
  }
  // A watch registered later under another name, possibly where the first one's
  // bookkeeping lived: counted apart.
  watch = {};
  auto other =
      ctxpool::watch_thread_local("legacy_user_v2", []() -> std::string& { return legacy_user; });
  w.run("leaves-it", leave);
  const auto found = diag::findings();
  REQUIRE(found.size() == 2);
  CHECK(found.back().variable == "legacy_user_v2");
  CHECK(found.back().count == 1);
}
