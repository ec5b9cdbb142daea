// Where the platform code is not built (no Linux, no elfutils or capstone):
// start() says so, and the rest is inert.
#include "plain_tls/monitor.hpp"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

namespace pt = ctxpool::diagnostics::detail::plain_tls;

TEST_CASE("plain_tls fallback: start reports discovery off with a notice, tasks report nothing") {
  pt::status st = pt::start([](std::string_view) { return false; });
  CHECK_FALSE(st.discovery);
  CHECK_FALSE(st.watchpoints);
  CHECK(st.notice.find("plain thread_local detection is off") != std::string::npos);
  CHECK(pt::variable_count() == 0);
  CHECK_THROWS_AS(pt::describe(0), std::out_of_range);
  pt::task_begin();
  pt::task_outcome out = pt::task_end();
  CHECK(out.left_dirty.empty());
  CHECK(out.read_first.empty());
  CHECK(pt::stats().traps == 0);
}
