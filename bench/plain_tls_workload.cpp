// The work of one task for bench/plain_tls_instrumented_bench, compiled twice
// into that program: once as is (namespace plain_build) and once with
// ctxpool_enable_residue_instrumentation's flags (namespace
// instrumented_build), so that both run side by side in one process.
#include <cstddef>
#include <cstdint>
#include <string>

#ifndef CTXPOOL_WORKLOAD_NS
#error "CTXPOOL_WORKLOAD_NS names the build of this copy"
#endif

namespace CTXPOOL_WORKLOAD_NS {

// A handler's worth of state: `depth` is written by every task (left dirty,
// so watched), `auth_token` left dirty once and then touched by none.
thread_local std::string auth_token;
thread_local long depth = 0;

/// About `instructions` instructions of memory-touching work (a checksum
/// over a buffer: a load, a xor and a multiply per byte, about 5
/// instructions), then one write to a thread_local: the common shape of a
/// request handler. Returns the checksum.
[[gnu::noinline]] std::uint64_t run_task(const unsigned char* data, std::size_t instructions) {
  std::uint64_t h = 1469598103934665603ULL;
  const std::size_t bytes = instructions / 5;
  for (std::size_t i = 0; i < bytes; ++i) h = (h ^ data[i]) * 1099511628211ULL;
  depth = static_cast<long>(h);
  return h;
}

void leave_token_dirty() { auth_token = std::string(40, 'x'); }

}  // namespace CTXPOOL_WORKLOAD_NS
