// extract + inject of traceparent alone allocates nothing: the promise
// bench/propagation_bench measures, kept by a test so that CI notices when a
// change breaks it (benchmarks are not run there). Its own program, because
// it replaces the global operator new to count allocations.
#include <ctxpool/propagation.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <string_view>

#include "support/allocation_probe.hpp"

using allocation_probe::allocations;
using allocation_probe::fixed_carrier;

TEST_CASE("extract + inject of traceparent alone allocates nothing, in a task's context") {
  fixed_carrier in;
  in.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  fixed_carrier out;
  out.traceparent.reserve(64);
  ctxpool::context ctx;  // as a pool task runs in one
  ctx.run([&] {
    // The context layer fills its per-thread block caches on first use.
    for (int i = 0; i < 16; ++i) {
      ctxpool::extract(in);
      ctxpool::inject(out);
    }
    const std::uint64_t before = allocations.load(std::memory_order_relaxed);
    for (int i = 0; i < 1000; ++i) {
      const ctxpool::trace_context t = ctxpool::extract(in);
      const ctxpool::span_id op = ctxpool::inject(out);
      // The work was done: the trace continues, under a new operation.
      REQUIRE(t.remote);
      REQUIRE(out.traceparent.size() == in.traceparent.size());
      char parent_hex[ctxpool::span_id::hex_size];
      op.to_chars(parent_hex);
      REQUIRE(std::string_view(out.traceparent).substr(36, sizeof parent_hex) ==
              std::string_view(parent_hex, sizeof parent_hex));
    }
    CHECK(allocations.load(std::memory_order_relaxed) - before == 0);
  });
}
