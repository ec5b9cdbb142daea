// extract + inject of traceparent alone allocates nothing: the promise
// bench/propagation_bench measures, kept by a test so that CI notices when a
// change breaks it (benchmarks are not run there). Its own program, because
// it replaces the global operator new to count allocations.
#include <ctxpool/propagation.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <new>
#include <string>
#include <string_view>

namespace {
std::atomic<std::uint64_t> allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

/// A carrier whose reads and writes never allocate once its strings hold
/// their capacity, like a pre-sized header buffer: whatever is counted is
/// ctxpool's own.
struct fixed_carrier {
  std::string traceparent;
  std::string tracestate;
  std::string baggage;
};

}  // namespace

template <>
struct ctxpool::text_map_traits<fixed_carrier> {
  static std::string* slot(fixed_carrier& c, std::string_view name) {
    if (name == header_name::traceparent) return &c.traceparent;
    if (name == header_name::tracestate) return &c.tracestate;
    if (name == header_name::baggage) return &c.baggage;
    return nullptr;
  }
  template <class F>
  static void for_each(const fixed_carrier& c, std::string_view name, F&& f) {
    const std::string* s = slot(const_cast<fixed_carrier&>(c), name);
    if (s != nullptr && !s->empty()) f(std::string_view(*s));
  }
  static void set(fixed_carrier& c, std::string_view name, std::string_view value) {
    if (std::string* s = slot(c, name)) s->assign(value);
  }
};

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
