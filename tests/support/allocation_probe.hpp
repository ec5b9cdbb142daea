// Counting heap allocations, for the promise that extract + inject of a
// traceparent allocates nothing: a replaced global operator new that counts,
// and a carrier that itself never allocates once its strings hold their
// capacity (a stand-in for a pre-sized header buffer), so whatever is
// counted is ctxpool's own. Shared by tests/propagation/allocation_test and
// bench/propagation_bench.
//
// Include it in exactly one translation unit of a program: it defines the
// replacement operators, which a program may define only once.
#pragma once

#include <ctxpool/propagation.hpp>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>

namespace allocation_probe {
/// Heap allocations made through operator new since the program started.
inline std::atomic<std::uint64_t> allocations{0};
}  // namespace allocation_probe

// Not inlined: GCC 12 otherwise sees a `new` expression's pointer reach
// free() and warns (-Wmismatched-new-delete) about the pair it just made.
[[gnu::noinline]] void* operator new(std::size_t size) {
  allocation_probe::allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t size) { return operator new(size); }
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace allocation_probe {
/// The three propagation headers in fixed slots.
struct fixed_carrier {
  std::string traceparent;
  std::string tracestate;
  std::string baggage;
};
}  // namespace allocation_probe

template <>
struct ctxpool::text_map_traits<allocation_probe::fixed_carrier> {
  using carrier = allocation_probe::fixed_carrier;
  static std::string* slot(carrier& c, std::string_view name) {
    if (name == header_name::traceparent) return &c.traceparent;
    if (name == header_name::tracestate) return &c.tracestate;
    if (name == header_name::baggage) return &c.baggage;
    return nullptr;
  }
  template <class F>
  static void for_each(const carrier& c, std::string_view name, F&& f) {
    const std::string* s = slot(const_cast<carrier&>(c), name);
    if (s != nullptr && !s->empty()) f(std::string_view(*s));
  }
  static void set(carrier& c, std::string_view name, std::string_view value) {
    if (std::string* s = slot(c, name)) s->assign(value);
  }
};
