// A shared library with 400 plain thread_locals (a large legacy module):
// each task touches one of them. Built twice, as is and instrumented
// (CTXPOOL_WORKLOAD_NS names the copy), for plain_tls_instrumented_bench.
#include <cstddef>

// Tables of generated declarations and cases, laid out by hand.
// clang-format off
#define CTXPOOL_V(n) thread_local long v##n = 0;
#define CTXPOOL_V10(n) CTXPOOL_V(n##0) CTXPOOL_V(n##1) CTXPOOL_V(n##2) CTXPOOL_V(n##3) CTXPOOL_V(n##4) \
  CTXPOOL_V(n##5) CTXPOOL_V(n##6) CTXPOOL_V(n##7) CTXPOOL_V(n##8) CTXPOOL_V(n##9)
#define CTXPOOL_V100(n) CTXPOOL_V10(n##0) CTXPOOL_V10(n##1) CTXPOOL_V10(n##2) CTXPOOL_V10(n##3) \
  CTXPOOL_V10(n##4) CTXPOOL_V10(n##5) CTXPOOL_V10(n##6) CTXPOOL_V10(n##7) CTXPOOL_V10(n##8) CTXPOOL_V10(n##9)

namespace CTXPOOL_WORKLOAD_NS {
CTXPOOL_V100(1) CTXPOOL_V100(2) CTXPOOL_V100(3) CTXPOOL_V100(4)

#define CTXPOOL_C(n) case n: return ++v##n;
#define CTXPOOL_C10(n) CTXPOOL_C(n##0) CTXPOOL_C(n##1) CTXPOOL_C(n##2) CTXPOOL_C(n##3) CTXPOOL_C(n##4) \
  CTXPOOL_C(n##5) CTXPOOL_C(n##6) CTXPOOL_C(n##7) CTXPOOL_C(n##8) CTXPOOL_C(n##9)
#define CTXPOOL_C100(n) CTXPOOL_C10(n##0) CTXPOOL_C10(n##1) CTXPOOL_C10(n##2) CTXPOOL_C10(n##3) \
  CTXPOOL_C10(n##4) CTXPOOL_C10(n##5) CTXPOOL_C10(n##6) CTXPOOL_C10(n##7) CTXPOOL_C10(n##8) CTXPOOL_C10(n##9)

/// Increments variable `i % 400` (v100 .. v499) of the calling thread.
__attribute__((visibility("default"))) long touch(std::size_t i) {
  switch (100 + i % 400) {
    CTXPOOL_C100(1) CTXPOOL_C100(2) CTXPOOL_C100(3) CTXPOOL_C100(4)
    default: return 0;
  }
}
// clang-format on
}  // namespace CTXPOOL_WORKLOAD_NS
