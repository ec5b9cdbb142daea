// Tests of <ctxpool/executor.hpp>: the thread pool, its executor and bind_context.
#include <ctxpool/executor.hpp>

#include <doctest/doctest.h>

#include <string>

namespace {
ctxpool::context_var<std::string> request_id{"request_id"};
}

TEST_CASE("submit runs the task in the submitter's context") {
  ctxpool::thread_pool pool{2};
  auto tok = request_id.set("r1");
  CHECK(pool.submit([] { return request_id.get(); }).get() == "r1");
  request_id.reset(tok);
}
