// A small program that process_test runs with CTXPOOL_DIAGNOSTICS set, to
// check what the detector does to a whole process: start-up errors, the
// SUMMARY lines, the report files and the exit status.
//
// Usage: diagnostics_child <scenario>; scenarios below. Tasks run on a
// hand-written one-thread "pool" marked with diagnostics::task_scope.
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include <ctxpool/context.hpp>
#include <ctxpool/diagnostics.hpp>
#include <ctxpool/thread_local.hpp>

namespace {

ctxpool::thread_local_var<std::string> auth_token{"auth_token"};
ctxpool::thread_local_var<int> connection{"connection", ctxpool::lifetime::thread};
ctxpool::context_var<std::string> user{"user"};
thread_local int legacy_flags = 0;

void login() {
  ctxpool::diagnostics::task_scope task{"login"};
  auth_token.set("alice-secret-token");
}

void anonymous() {
  ctxpool::diagnostics::task_scope task{"anonymous"};
  if (auth_token.has_value()) std::puts("anonymous request ran as someone else");
}

void stale() {
  for (int i = 0; i < 3; ++i) {
    login();
    anonymous();
  }
}

void clean() {
  for (int i = 0; i < 3; ++i) {
    ctxpool::diagnostics::task_scope task{"request"};
    auth_token.set("token");
    (void)auth_token.value();
    connection.set(i);
    auto token = user.set("bob");
    user.reset(token);
  }
}

void residue() {
  auto watch = ctxpool::watch_thread_local("legacy_flags", []() -> int& { return legacy_flags; });
  ctxpool::diagnostics::task_scope task{"sets-flags"};
  legacy_flags = 7;
}

std::unique_ptr<ctxpool::context> kept_context;         // kept alive past its task by mistake
std::optional<ctxpool::token<std::string>> kept_token;  // keeps a replaced value alive

void leak() {
  ctxpool::diagnostics::task_scope task{"leaky"};
  (void)user.set("first");
  kept_token.emplace(user.set("second"));
  kept_context = std::make_unique<ctxpool::context>(ctxpool::copy_context());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string scenario = argc > 1 ? argv[1] : "";
  if (scenario == "stale") {
    stale();
  } else if (scenario == "clean") {
    clean();
  } else if (scenario == "residue") {
    residue();
  } else if (scenario == "both") {
    stale();
    residue();
  } else if (scenario == "leak") {
    leak();
  } else if (scenario == "taken") {
    // What a test-framework guard does: take the findings and fail the test
    // its own way; the report still gets them.
    stale();
    const auto taken = ctxpool::diagnostics::take_findings();
    std::fprintf(stderr, "child: took %zu finding(s)\n", taken.size());
  } else if (scenario == "enabled") {
    return ctxpool::diagnostics::enabled() ? 10 : 11;
  } else {
    std::fprintf(stderr, "unknown scenario '%s'\n", scenario.c_str());
    return 3;
  }
  std::fprintf(stderr, "child: main returns\n");
  return 0;
}
