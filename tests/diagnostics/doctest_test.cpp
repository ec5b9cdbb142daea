// Tests of <ctxpool/diagnostics/doctest.hpp>: the guard fails the test case
// that produced a finding, and stays quiet otherwise.
#include <ctxpool/diagnostics/doctest.hpp>

#include <string>
#include <thread>

#include <ctxpool/thread_local.hpp>

#include "support.hpp"

namespace diag = ctxpool::diagnostics;

namespace {
ctxpool::thread_local_var<std::string> api_key{"api_key"};
ctxpool::thread_local_var<std::string> other_key{"other_key"};
}  // namespace

TEST_CASE("a clean test case passes under the guard") {
  CTXPOOL_CHECK_NO_FINDINGS();
  CHECK(diag::enabled());  // the guard switched detection on
  ctxpool_test::worker w;
  w.run("a", [] {
    api_key.set("k");
    CHECK(api_key.value() == "k");
  });
  w.run("b", [] {
    api_key.set("j");
    CHECK(api_key.value() == "j");
  });
}

// Expected to fail: the guard must turn the stale read into a test failure.
// Were the guard silent, this case would pass and doctest would report it as
// a failure of should_fail.
TEST_CASE("a stale read fails the test case" * doctest::should_fail()) {
  {
    CTXPOOL_CHECK_NO_FINDINGS();
    ctxpool_test::worker w;
    w.run("login", [] { api_key.set("k"); });
    w.run("anonymous", [] { (void)api_key.has_value(); });
  }
  // The guard withdrew what it reported: it does not also change the exit status.
  CHECK(diag::findings().empty());
}

TEST_CASE("findings made before the guard are not its business") {
  ctxpool_test::worker w;
  {
    ctxpool_test::detection_session session;
    w.run("login", [] { api_key.set("k"); });
    w.run("anonymous", [] { (void)api_key.has_value(); });
    REQUIRE(diag::findings().size() == 1);
    {
      CTXPOOL_CHECK_NO_FINDINGS();
      w.run("clean", [] {
        other_key.set("x");
        CHECK(other_key.value() == "x");
      });
    }
    CHECK(diag::findings().size() == 1);  // still there, not taken by the guard
  }
}

// Expected to fail: tasks ran that detection could not see (what a pool built
// before the guard switched detection on does); the guard must say so rather
// than pass.
TEST_CASE("tasks the detector could not see fail the guard loudly" * doctest::should_fail()) {
  ctxpool_test::detection_session off{[] {
    diag::options opts;
    opts.mode = diag::mode::off;
    return opts;
  }()};
  CTXPOOL_CHECK_NO_FINDINGS();  // switches detection on
  std::thread([] {
    ctxpool::slot_wipe_scope unannounced;
    (void)api_key.has_value();
  }).join();
}
