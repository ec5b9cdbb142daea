// Residue detection does not depend on the schedule: each program shape of
// shapes_child, run repeatedly with 1, 2 and 4 workers, gets the same verdict
// in every run -- exit 66 naming the variable for the buggy shapes, exit 0 for
// the clean ones -- whatever worker each task landed on.
//
// Runs per worker count: CTXPOOL_SHAPE_RUNS if set, else 6 (2 in sanitizer
// builds, whose processes start slowly).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "support.hpp"

namespace {

int runs_per_worker_count() {
  if (const char* runs = std::getenv("CTXPOOL_SHAPE_RUNS")) return std::max(1, std::atoi(runs));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return 2;
#else
  return 6;
#endif
}

/// Runs `shape` with 1, 2 and 4 workers, each several times, and checks the
/// verdict of every run.
void check_every_run(const std::string& shape, int expected_exit, const std::string& variable) {
  ctxpool_test::scratch_dir dir;
  const int runs = runs_per_worker_count();
  for (const int workers : {1, 2, 4}) {
    for (int run = 0; run < runs; ++run) {
      const auto result = ctxpool_test::run_child(
          CTXPOOL_SHAPES_CHILD, std::vector<std::string>{shape, std::to_string(workers)}, "residue",
          dir);
      INFO("shape ", shape, ", ", workers, " worker(s), run ", run + 1, "\n", result.err);
      REQUIRE(result.exit_status == expected_exit);
      if (expected_exit == 66) {
        CHECK(result.err.find("of '" + variable + "'") != std::string::npos);
        CHECK(result.err.find("SUMMARY: ctxpool: ") != std::string::npos);
        CHECK(result.err.find("alice-token") == std::string::npos);  // values never printed
      } else {
        CHECK(result.err.find("ERROR: ctxpool") == std::string::npos);
      }
    }
  }
}

}  // namespace

TEST_SUITE("buggy shapes: exit 66 naming the variable in every run") {
  TEST_CASE("a coroutine leaves a slot, another coroutine reads it") {
    check_every_run("coroutine_to_coroutine", 66, "auth_token");
  }
  TEST_CASE("the same through a strand") { check_every_run("strand", 66, "auth_token"); }
  TEST_CASE("asio::post handlers") { check_every_run("asio_post", 66, "auth_token"); }
  TEST_CASE("a nested submit reads what its parent left") {
    check_every_run("nested_submit", 66, "auth_token");
  }
  TEST_CASE("a read via value_or") { check_every_run("value_or_read", 66, "auth_token"); }
  TEST_CASE("a stale read after 1,000 unrelated tasks") {
    check_every_run("after_many_tasks", 66, "auth_token");
  }
  TEST_CASE("a local_stack whose pop an exception skipped, read by a later request") {
    check_every_run("stack_skipped_pop", 66, "request_stack");
  }
  TEST_CASE("a later request that pushes first and then reads its depth") {
    check_every_run("stack_push_then_depth", 66, "request_stack");
  }
  TEST_CASE("a coroutine writes before co_await and reads after") {
    check_every_run("coroutine_suspension", 66, "auth_token");
  }
}

TEST_SUITE("clean shapes: exit 0 in every run") {
  TEST_CASE("tasks reading their own writes") { check_every_run("own_write", 0, ""); }
  TEST_CASE("a lifetime::thread cache") { check_every_run("thread_cache", 0, ""); }
  TEST_CASE("a value passed by context_var") { check_every_run("context_var_passed", 0, ""); }
  TEST_CASE("bind_context on a foreign io_context") {
    check_every_run("bind_context_foreign", 0, "");
  }
  TEST_CASE("two coroutines from one acceptor, each writing then reading its slot") {
    check_every_run("two_coroutines_one_acceptor", 0, "");
  }
}
