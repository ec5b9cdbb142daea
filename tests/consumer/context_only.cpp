// A program that links ctxpool::ctxpool but uses only the context layer: a
// hand-written std::thread worker with a context_var and a thread_local_var,
// nothing from diagnostics or the pool. It must still read and check
// CTXPOOL_DIAGNOSTICS at start-up, so that a misspelt mode fails the CI run
// instead of switching detection off (see consumer/context_only_typo).
#include <ctxpool/context.hpp>
#include <ctxpool/thread_local.hpp>

#include <cstdio>
#include <string>
#include <thread>

namespace {
ctxpool::context_var<std::string> request_id{"request_id"};
ctxpool::thread_local_var<int> handled{"handled"};
}  // namespace

int main() {
  ctxpool::set_scope scope{request_id, "req-7"};
  ctxpool::context snapshot = ctxpool::copy_context();
  std::string seen;
  std::thread worker{[&] {
    snapshot.run([&] {
      handled.set(1);
      seen = request_id.get();
    });
  }};
  worker.join();
  if (seen != "req-7") {
    std::fprintf(stderr, "context_only: worker saw '%s', expected 'req-7'\n", seen.c_str());
    return 1;
  }
  std::puts("context_only: ok");
  return 0;
}
