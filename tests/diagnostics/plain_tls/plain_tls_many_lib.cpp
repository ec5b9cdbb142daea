// A shared library of the test program with 400 plain thread_locals (a large
// legacy module), alternately a char and a long so that alignment leaves gaps
// between them, and in their midst a variable of ctxpool's own that discovery
// skips: the per-task diff must find the one changed among them, whatever lies
// between.
#include <cstddef>

// Tables of generated declarations and cases, laid out by hand.
// clang-format off
#define CTXPOOL_PAIR(n) thread_local char many_c##n = 0; thread_local long many_l##n = 0;
#define CTXPOOL_PAIR10(n) CTXPOOL_PAIR(n##0) CTXPOOL_PAIR(n##1) CTXPOOL_PAIR(n##2) CTXPOOL_PAIR(n##3) \
  CTXPOOL_PAIR(n##4) CTXPOOL_PAIR(n##5) CTXPOOL_PAIR(n##6) CTXPOOL_PAIR(n##7) CTXPOOL_PAIR(n##8) CTXPOOL_PAIR(n##9)
#define CTXPOOL_PAIR100(n) CTXPOOL_PAIR10(n##0) CTXPOOL_PAIR10(n##1) CTXPOOL_PAIR10(n##2) CTXPOOL_PAIR10(n##3) \
  CTXPOOL_PAIR10(n##4) CTXPOOL_PAIR10(n##5) CTXPOOL_PAIR10(n##6) CTXPOOL_PAIR10(n##7) CTXPOOL_PAIR10(n##8) \
  CTXPOOL_PAIR10(n##9)

CTXPOOL_PAIR100(1)
namespace ctxpool::test_only {
thread_local long skipped_counter = 0;  // "ctxpool::": never a variable of the program's own
}  // namespace ctxpool::test_only
CTXPOOL_PAIR100(2)

#define CTXPOOL_CASE(n) case n: if (which_long) ++many_l##n; else ++many_c##n; break;
#define CTXPOOL_CASE10(n) CTXPOOL_CASE(n##0) CTXPOOL_CASE(n##1) CTXPOOL_CASE(n##2) CTXPOOL_CASE(n##3) \
  CTXPOOL_CASE(n##4) CTXPOOL_CASE(n##5) CTXPOOL_CASE(n##6) CTXPOOL_CASE(n##7) CTXPOOL_CASE(n##8) CTXPOOL_CASE(n##9)
#define CTXPOOL_CASE100(n) CTXPOOL_CASE10(n##0) CTXPOOL_CASE10(n##1) CTXPOOL_CASE10(n##2) CTXPOOL_CASE10(n##3) \
  CTXPOOL_CASE10(n##4) CTXPOOL_CASE10(n##5) CTXPOOL_CASE10(n##6) CTXPOOL_CASE10(n##7) CTXPOOL_CASE10(n##8) \
  CTXPOOL_CASE10(n##9)

/// Changes variable `i` (0 .. 399) of the calling thread: many_c100, many_l100,
/// many_c101, ... many_l299; `delta` is added to it.
__attribute__((visibility("default"))) void many_change(std::size_t i, int delta) {
  const std::size_t pair = 100 + i / 2;
  const bool which_long = i % 2 == 1;
  for (int k = 0; k < delta; ++k) {
    switch (pair) {
      CTXPOOL_CASE100(1) CTXPOOL_CASE100(2)
      default: return;
    }
  }
}
// clang-format on

/// Changes the skipped variable (a ctxpool internal's state changing under a task).
__attribute__((visibility("default"))) void many_change_skipped() {
  ++ctxpool::test_only::skipped_counter;
}
