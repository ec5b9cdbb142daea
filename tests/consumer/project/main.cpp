// A consumer of ctxpool: a context value set by the submitter is seen by the task.
#include <ctxpool/context.hpp>
#include <ctxpool/executor.hpp>

#include <cstdio>

#if defined(CONSUMER_EXPECT_ASSERTS) && defined(NDEBUG)
#error "NDEBUG is defined: ctxpool changed the build type of the project that added it"
#endif
#include <string>

namespace {
ctxpool::context_var<std::string> request_id{"request_id"};
}

int main() {
  ctxpool::thread_pool pool{2};
  auto scope = ctxpool::set_scope{request_id, "req-42"};
  std::string seen = pool.submit([] { return request_id.get(); }).get();
  pool.join();
  if (seen != "req-42") {
    std::fprintf(stderr, "consumer: task saw '%s', expected 'req-42'\n", seen.c_str());
    return 1;
  }
  std::puts("consumer: ok");
  return 0;
}
