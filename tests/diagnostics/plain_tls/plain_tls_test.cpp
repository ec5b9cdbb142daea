// The plain thread_local platform code (diagnostics/src/plain_tls): discovery,
// the per-task diff, watchpoints with read/write classification, the forced
// fallback. Built with -g -O2 so that read sites have lines at real
// optimisation.
#include "plain_tls/monitor.hpp"

#include <doctest/doctest.h>
#include <dlfcn.h>
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace plain_tls_test;

// ---- the variables a request handler would have ----------------------------------------

thread_local std::string auth_token;
thread_local int call_depth = 0;
thread_local unsigned per_thread_rng = 12345;              // declared a cache (is_cache)
thread_local std::string greeting = std::string(40, 'g');  // dynamically initialised

int& request_ctx() {
  static thread_local int depth = 0;
  return depth;
}

std::string& lazy_name() {
  static thread_local std::string name = std::string(50, 'n');  // guarded first-use init
  return name;
}

void lib_count_request();
long lib_request_count();
void many_change(std::size_t i, int delta);  // plain_tls_many_lib: variable i of 400
void many_change_skipped();                  // ... and its variable of ctxpool's own

// Each function below reads or writes one variable, on a line the tests name.
unsigned empty_line = 0, increment_line = 0, copy_line = 0, ctx_line = 0;

__attribute__((noinline)) void login(const std::string& who) { auth_token = who; }

__attribute__((noinline)) bool anonymous_request() {
  empty_line = __LINE__ + 1;
  return auth_token.empty();
}

__attribute__((noinline)) void enter_request() {
  increment_line = __LINE__ + 1;
  ++call_depth;
}

__attribute__((noinline)) std::string copy_token() {
  copy_line = __LINE__ + 1;
  std::string copy = auth_token;
  return copy;
}

__attribute__((noinline)) void nested_request() {
  ctx_line = __LINE__ + 1;
  ++request_ctx();
}

// ---- discovery ------------------------------------------------------------------------------

TEST_CASE("plain_tls: discovery finds the program's own thread_locals with their sizes") {
  pt::status st = start_in(pt::watch_mode::off);
  REQUIRE(st.discovery);

  auto token = find("auth_token");
  REQUIRE(token);
  CHECK(pt::describe(*token).size == sizeof(std::string));
  CHECK(pt::describe(*token).module.find("plain_tls_test") != std::string::npos);

  auto ctx = find("request_ctx()::depth");
  REQUIRE(ctx);
  CHECK(pt::describe(*ctx).size == sizeof(int));

  auto lib = find("lib_requests");
  REQUIRE(lib);
  CHECK(pt::describe(*lib).size == sizeof(long));
  CHECK(pt::describe(*lib).module.find("libplain_tls_lib") != std::string::npos);
  lib_count_request();  // the library is really used, not dropped by --as-needed
}

TEST_CASE("plain_tls: discovery skips runtimes, ctxpool, guard variables and declared caches") {
  start_in(pt::watch_mode::off);
  REQUIRE(pt::variable_count() > 0);
  for (std::uint32_t i = 0; i < pt::variable_count(); ++i) {
    const pt::variable& v = pt::describe(i);
    CAPTURE(v.name);
    CAPTURE(v.module);
    CHECK_FALSE(v.name.starts_with("ctxpool::"));
    CHECK_FALSE(v.name.starts_with("std::"));
    CHECK_FALSE(v.name.starts_with("doctest::"));
    CHECK_FALSE(v.name.starts_with("__"));
    CHECK(v.name.find("guard variable") == std::string::npos);
    CHECK(v.module.find("libstdc++") == std::string::npos);
    CHECK(v.module.find("libc.so") == std::string::npos);
  }
  CHECK_FALSE(find("per_thread_rng"));
  CHECK_THROWS_AS(pt::describe(pt::variable_count()), std::out_of_range);
}

TEST_CASE(
    "plain_tls: a module loaded with dlopen after a thread's tasks ran is diffed from the next task") {
  start_in(pt::watch_mode::off);
  CHECK_FALSE(find("plugin_state"));
  std::thread worker([&] {
    // Tasks before the plugin exists: the thread's snapshot covers the
    // modules of then, and must grow to the plugin's at the next task.
    for (int i = 0; i < 20; ++i) CHECK(run_task([] {}).left_dirty.empty());
    void* plugin = dlopen(CTXPOOL_PLAIN_TLS_PLUGIN, RTLD_NOW);
    CHECK_OR_RETURN(plugin != nullptr);
    auto set = reinterpret_cast<void (*)(int)>(dlsym(plugin, "plugin_set"));
    CHECK_OR_RETURN((set != nullptr));
    // The first task after dlopen already sees the plugin's variable changed.
    pt::task_outcome first = run_task([&] { set(7); });
    auto var = find("plugin_state");
    CHECK_OR_RETURN(var);
    CHECK(left_dirty(first, *var));
    CHECK(first.left_dirty.size() == 1);
    CHECK_FALSE(left_dirty(run_task([] {}), *var));
    CHECK(left_dirty(run_task([&] { set(8); }), *var));
  });
  worker.join();
}

// ---- the per-task diff ----------------------------------------------------------------------

TEST_CASE(
    "plain_tls: a task that leaves a string or an int changed leaves it dirty, an untouched one does not") {
  start_in(pt::watch_mode::off);
  auto token = find("auth_token");
  auto counter = find("call_depth");
  auto lib = find("lib_requests");
  REQUIRE(token);
  REQUIRE(counter);
  REQUIRE(lib);
  std::thread worker([&] {
    pt::task_outcome first = run_task([] { login("alice"); });
    CHECK(left_dirty(first, *token));
    CHECK_FALSE(left_dirty(first, *counter));

    pt::task_outcome second = run_task([] { enter_request(); });
    CHECK(left_dirty(second, *counter));
    CHECK_FALSE(left_dirty(second, *token));

    pt::task_outcome third = run_task([] { (void)anonymous_request(); });
    CHECK(third.left_dirty.empty());

    pt::task_outcome restored = run_task([] {
      auth_token = "bob";
      auth_token = "alice";  // same bytes as at task begin (short string, same buffer)
    });
    CHECK_FALSE(left_dirty(restored, *token));

    CHECK(left_dirty(run_task([] { lib_count_request(); }), *lib));
    CHECK(lib_request_count() == 1);
  });
  worker.join();
}

namespace {

/// The indexes of plain_tls_many_lib's 400 variables, in many_change's order.
std::vector<std::uint32_t> many_variables() {
  std::vector<std::uint32_t> out;
  for (int pair = 100; pair < 300; ++pair) {
    for (const char* kind : {"many_c", "many_l"}) {
      auto var = find(kind + std::to_string(pair));
      REQUIRE_MESSAGE(var, kind, pair, " is not discovered");
      out.push_back(*var);
    }
  }
  return out;
}

std::vector<std::uint32_t> sorted(std::vector<std::uint32_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST_CASE("plain_tls: 400 thread_locals of a library: exactly the ones a task changed are dirty") {
  start_in(pt::watch_mode::off);
  const std::vector<std::uint32_t> many = many_variables();
  for (std::uint32_t i = 0; i < pt::variable_count(); ++i) {
    CHECK(pt::describe(i).name.find("skipped_counter") == std::string::npos);
  }
  std::thread worker([&] {
    // Many clean tasks first: the per-task work must not drift from the bytes.
    for (int i = 0; i < 200; ++i) CHECK(run_task([] {}).left_dirty.empty());
    for (std::size_t i = 0; i < many.size(); ++i) {
      CAPTURE(i);
      CHECK(run_task([i] { many_change(i, 1); }).left_dirty == std::vector<std::uint32_t>{many[i]});
    }
    // Several at once, far apart and next to each other.
    CHECK(sorted(run_task([] {
                   for (int i : {0, 1, 2, 200, 398, 399})
                     many_change(static_cast<std::size_t>(i), 1);
                 }).left_dirty) ==
          sorted({many[0], many[1], many[2], many[200], many[398], many[399]}));
    // A skipped variable (ctxpool's own) changing in their midst is nothing,
    // and hides nothing next to it.
    CHECK(run_task([] { many_change_skipped(); }).left_dirty.empty());
    CHECK(sorted(run_task([] {
                   many_change_skipped();
                   many_change(199, 1);
                   many_change(200, 1);
                 }).left_dirty) == sorted({many[199], many[200]}));
    // Changed and changed back within the task: the same bytes, nothing left.
    CHECK(run_task([] { many_change(56, 256); }).left_dirty.empty());  // a char wraps around
  });
  worker.join();
}

TEST_CASE("plain_tls: a change made between tasks, outside any, is not the next task's") {
  // A thread that runs tasks inline between code of its own (the non-worker
  // waiter of a task_group): what its own code changes is no task's residue.
  start_in(pt::watch_mode::off);
  auto counter = find("call_depth");
  REQUIRE(counter);
  const std::vector<std::uint32_t> many = many_variables();
  std::thread waiter([&] {
    CHECK(run_task([] {}).left_dirty.empty());
    enter_request();
    many_change(123, 1);
    CHECK(run_task([] {}).left_dirty.empty());
    login("between");
    CHECK(run_task([] { enter_request(); }).left_dirty == std::vector<std::uint32_t>{*counter});
  });
  waiter.join();
}

TEST_CASE("plain_tls: first-use initialisation is not residue, a later change is") {
  start_in(pt::watch_mode::off);
  auto lazy = find("lazy_name()::name");
  auto greet = find("greeting");
  auto ctx = find("request_ctx()::depth");
  REQUIRE(lazy);
  REQUIRE(greet);
  REQUIRE(ctx);
  std::thread worker([&] {  // a fresh thread: nothing initialised on it yet
    pt::task_outcome init = run_task([] {
      CHECK(lazy_name().size() == 50);
      CHECK(greeting.size() == 40);
      CHECK(request_ctx() == 0);
    });
    CHECK_FALSE(left_dirty(init, *lazy));
    CHECK_FALSE(left_dirty(init, *greet));
    CHECK_FALSE(left_dirty(init, *ctx));

    CHECK(left_dirty(run_task([] { lazy_name() = "changed"; }), *lazy));
    CHECK(left_dirty(run_task([] { greeting.clear(); }), *greet));
    CHECK(left_dirty(run_task([] { ++request_ctx(); }), *ctx));
  });
  worker.join();
}

TEST_CASE("plain_tls: a thread that has not started a task reports nothing at task_end") {
  start_in(pt::watch_mode::off);
  std::thread worker([] {
    pt::task_outcome out = pt::task_end();
    CHECK(out.left_dirty.empty());
    CHECK(out.read_first.empty());
  });
  worker.join();
}

// ---- watchpoints ----------------------------------------------------------------------------

namespace {

/// Leaves auth_token, call_depth and request_ctx()::depth dirty once, so that
/// every later task watches them.
void leave_everything_dirty() {
  std::thread writer([] {
    run_task([] {
      login("alice");
      enter_request();
      ++request_ctx();
    });
  });
  writer.join();
}

/// The read-first checks shared by the hardware and single-step runs.
void check_reads_first() {
  auto token = find("auth_token");
  auto counter = find("call_depth");
  auto ctx = find("request_ctx()::depth");
  REQUIRE(token);
  REQUIRE(counter);
  REQUIRE(ctx);
  leave_everything_dirty();
  std::thread reader([&] {
    auto empty_site = read_first(run_task([] { (void)anonymous_request(); }), *token);
    CHECK_OR_RETURN(empty_site);
    CHECK(std::string(empty_site->function_name()).find("anonymous_request") != std::string::npos);
    CHECK(ends_with(empty_site->file_name(), "plain_tls_test.cpp"));
    CHECK(empty_site->line() == empty_line);
    CHECK(empty_site->pc() != 0);

    auto increment_site = read_first(run_task([] { enter_request(); }), *counter);
    CHECK_OR_RETURN(increment_site);
    CHECK(std::string(increment_site->function_name()).find("enter_request") != std::string::npos);
    CHECK(increment_site->line() == increment_line);

    auto copy_site = read_first(run_task([] { (void)copy_token(); }), *token);
    CHECK_OR_RETURN(copy_site);
    CHECK(std::string(copy_site->function_name()).find("copy_token") != std::string::npos);
    CHECK(copy_site->line() == copy_line);

    auto ctx_site = read_first(run_task([] { nested_request(); }), *ctx);
    CHECK_OR_RETURN(ctx_site);
    CHECK((std::string(ctx_site->function_name()).find("nested_request") != std::string::npos ||
           std::string(ctx_site->function_name()).find("request_ctx") != std::string::npos));

    // Writing first is clean, also when the assignment reads the old string.
    pt::task_outcome assign = run_task([] { login("carol"); });
    CHECK_FALSE(read_first(assign, *token));
    CHECK(left_dirty(assign, *token));
    CHECK_FALSE(read_first(run_task([] { call_depth = 3; }), *counter));
    // A task that does not touch them reports nothing.
    CHECK(run_task([] {}).read_first.empty());
  });
  reader.join();
}

void check_every_worker_reads_first(int workers) {
  auto token = find("auth_token");
  REQUIRE(token);
  leave_everything_dirty();
  constexpr int tasks_per_worker = 3;
  std::vector<int> reads(static_cast<std::size_t>(workers), 0);
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      for (int i = 0; i < tasks_per_worker; ++i) {
        if (read_first(run_task([] { (void)anonymous_request(); }), *token))
          ++reads[static_cast<std::size_t>(w)];
      }
    });
  }
  for (std::thread& t : pool) t.join();
  for (int w = 0; w < workers; ++w) {
    CAPTURE(w);
    CHECK(reads[static_cast<std::size_t>(w)] == tasks_per_worker);
  }
}

/// Three rounds with 1, 2 and 4 workers: the result must not depend on the
/// schedule nor on what earlier rounds left.
void check_every_worker_reads_first_repeatedly() {
  for (int round = 0; round < 3; ++round) {
    for (int workers : {1, 2, 4}) {
      CAPTURE(round);
      CAPTURE(workers);
      check_every_worker_reads_first(workers);
    }
  }
}

}  // namespace

TEST_CASE("plain_tls: single step: empty(), ++depth and a copy read first, with the reading line") {
  pt::status st = start_in(pt::watch_mode::single_step);
  if (under_tsan) {
    CHECK_FALSE(st.watchpoints);
    CHECK(st.notice.find("ThreadSanitizer") != std::string::npos);
    return;
  }
  REQUIRE(st.watchpoints);
  CHECK(st.notice.empty());
  check_reads_first();
  CHECK(pt::stats().traps > 0);
  CHECK(pt::stats().variables_watched >= 3);
}

TEST_CASE(
    "plain_tls: single step: every task reads first, with 1, 2 and 4 workers, in repeated rounds") {
  pt::status st = start_in(pt::watch_mode::single_step);
  if (under_tsan) {
    CHECK_FALSE(st.watchpoints);
    return;
  }
  REQUIRE(st.watchpoints);
  check_every_worker_reads_first_repeatedly();
}

TEST_CASE("plain_tls: single step: a watched task may start threads of its own") {
  pt::status st = start_in(pt::watch_mode::single_step);
  if (!st.watchpoints) return;  // TSan: checked above
  auto token = find("auth_token");
  REQUIRE(token);
  leave_everything_dirty();
  std::thread worker([&] {
    int seen = 0;
    pt::task_outcome out = run_task([&] {
      (void)anonymous_request();
      std::thread helper([&] { seen = 1; });  // created while this thread is traced
      helper.join();
    });
    CHECK(seen == 1);
    CHECK(read_first(out, *token));
    // A task that starts a thread before its first access: tracing stops at
    // the thread's creation, the task still ends normally.
    pt::task_outcome later = run_task([&] {
      std::thread helper([&] { seen = 2; });
      helper.join();
      (void)anonymous_request();
    });
    CHECK(seen == 2);
    CHECK(later.left_dirty.empty());
  });
  worker.join();
}

namespace {
volatile sig_atomic_t foreign_traps = 0;
void count_foreign_trap(int) { foreign_traps = foreign_traps + 1; }
}  // namespace

TEST_CASE("plain_tls: a SIGTRAP that is not a watchpoint's reaches the handler installed before") {
  struct sigaction mine {
  }, saved{};
  mine.sa_handler = count_foreign_trap;
  sigemptyset(&mine.sa_mask);
  REQUIRE(::sigaction(SIGTRAP, &mine, &saved) == 0);
  pt::status st = start_in(pt::watch_mode::single_step);
  if (!under_tsan) {
    REQUIRE(st.watchpoints);
    struct sigaction now {};
    ::sigaction(SIGTRAP, nullptr, &now);
    CHECK((now.sa_handler != count_foreign_trap));  // the monitor's handler is in front
  }
  foreign_traps = 0;
  ::raise(SIGTRAP);
  CHECK(foreign_traps == 1);
  ::sigaction(SIGTRAP, &saved, nullptr);
}

TEST_CASE(
    "plain_tls: hardware watchpoints: the same reads, or an honest notice when the machine has none") {
  pt::status st = start_in(pt::watch_mode::hardware);
  if (under_tsan) {
    CHECK_FALSE(st.watchpoints);
    CHECK(st.notice.find("ThreadSanitizer") != std::string::npos);
    return;
  }
  if (!st.watchpoints) {
    // Must name why (perf refused, or breakpoints that never fire).
    CHECK(st.notice.find("reads are not watched") != std::string::npos);
    WARN_MESSAGE(false, "hardware watchpoint checks skipped: " << st.notice);
    return;
  }
  check_reads_first();
  check_every_worker_reads_first_repeatedly();
}

TEST_CASE(
    "plain_tls: automatic mode: hardware watchpoints where they fire, else one notice, never single-stepping") {
  ::unsetenv("CTXPOOL_PLAIN_TLS_WATCH");
  const bool hardware_fires = start_in(pt::watch_mode::hardware).watchpoints;
  pt::status st = start_in(pt::watch_mode::automatic);
  if (under_tsan) {
    CHECK_FALSE(st.watchpoints);
    return;
  }
  // This test program is not instrumented, so the choice is between the
  // debug registers and nothing: single-stepping costs a trap per
  // instruction and is never chosen for the user.
  CHECK(st.watchpoints == hardware_fires);
  if (hardware_fires) {
    CHECK(st.how == pt::watcher::hardware);
    CHECK(st.notice.empty());
    check_reads_first();
    return;
  }
  CHECK(st.how == pt::watcher::none);
  // One notice that names the situation and the way to full detection.
  CHECK(st.notice.find("reads are not watched") != std::string::npos);
  CHECK((st.notice.find("perf_event_open") != std::string::npos ||
         st.notice.find("never fire") != std::string::npos));
  CHECK(st.notice.find("ctxpool_enable_residue_instrumentation") != std::string::npos);
  CHECK(st.notice.find("single-step") != std::string::npos);
}

TEST_CASE(
    "plain_tls: more dirty variables than registers are watched in turn, and the blind spots counted") {
  pt::status st = start_in(pt::watch_mode::hardware);
  if (!st.watchpoints) {
    WARN_MESSAGE(false, "rotation checks skipped: " << st.notice);
    return;
  }
  leave_everything_dirty();
  std::thread writer([] {
    run_task([] {
      lib_count_request();
      greeting = "x";
      lazy_name() = "y";
    });
  });
  writer.join();
  std::thread worker([] {
    for (int i = 0; i < 8; ++i) run_task([] {});
  });
  worker.join();
  pt::watch_stats s = pt::stats();
  CHECK(s.variables_watched >= 6);
  CHECK(s.unwatched_task_variables > 0);
  CHECK(s.longest_unwatched_run > 0);
  CHECK(s.tasks_armed >= 8);
}

// ---- the fallback ---------------------------------------------------------------------------

TEST_CASE("plain_tls: forced off: a notice says so, and left-dirty findings still work") {
  pt::status st = start_in(pt::watch_mode::off);
  CHECK(st.discovery);
  CHECK_FALSE(st.watchpoints);
  CHECK(st.notice.find("reads are not watched") != std::string::npos);
  CHECK(st.notice.find("forced off") != std::string::npos);
  auto token = find("auth_token");
  REQUIRE(token);
  std::thread worker([&] {
    CHECK(left_dirty(run_task([] { login("mallory"); }), *token));
    CHECK(run_task([] { (void)anonymous_request(); }).read_first.empty());
  });
  worker.join();
}

TEST_CASE("plain_tls: CTXPOOL_PLAIN_TLS_WATCH=off turns watchpoints off, a bad value is named") {
  ::setenv("CTXPOOL_PLAIN_TLS_WATCH", "off", 1);
  pt::status off = start_in(pt::watch_mode::automatic);
  CHECK_FALSE(off.watchpoints);
  CHECK(off.notice.find("CTXPOOL_PLAIN_TLS_WATCH=off") != std::string::npos);

  ::setenv("CTXPOOL_PLAIN_TLS_WATCH", "hardwire", 1);
  pt::status bad = start_in(pt::watch_mode::automatic);
  CHECK(bad.notice.find("'hardwire' is not one of") != std::string::npos);
  ::unsetenv("CTXPOOL_PLAIN_TLS_WATCH");
}

TEST_CASE("plain_tls: a task nested inside another on one thread is part of the outer one") {
  start_in(pt::watch_mode::off);
  auto token = find("auth_token");
  REQUIRE(token);
  std::thread worker([&] {
    pt::task_begin();
    pt::task_begin();
    login("nested");
    pt::task_outcome inner = pt::task_end();
    CHECK(inner.left_dirty.empty());
    pt::task_outcome outer = pt::task_end();
    CHECK(left_dirty(outer, *token));
  });
  worker.join();
}
