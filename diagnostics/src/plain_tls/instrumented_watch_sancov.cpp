// The SanitizerCoverage load/store callbacks and the per-thread map behind
// them (see instrumented_watch.hpp). This file must not be instrumented
// itself (the library is never built with the flags), and keeps frame
// pointers (CMake sets -fno-omit-frame-pointer on it) so that a first access
// can name its callers cheaply.
#include <algorithm>
#include <atomic>

#include <pthread.h>

#include "instrumented_watch.hpp"

namespace ctxpool::diagnostics::detail::plain_tls::instrumented {

namespace {

constinit std::atomic<std::uint64_t> instrumented_modules{0};
constinit std::atomic<std::uint64_t> first_access_count{0};

/// One module's TLS block on this thread: `var_of[addr - lo]` is the
/// variable at that byte plus one, 0 for bytes of no variable.
struct region {
  std::uintptr_t lo = 0;
  std::uintptr_t size = 0;
  const std::uint32_t* var_of = nullptr;
};

inline constexpr std::size_t max_regions = 16;

/// What the callbacks read: fixed-size and constant-initialised, so that the
/// fast path is a TLS access and one compare per region.
struct hot_state {
  std::uint32_t region_count = 0;  // 0 while no task is armed on this thread
  std::uintptr_t lo = 0,
                 span = 0;  // [lo, lo + span) covers every region: one compare rejects the rest
  region regions[max_regions];
};

/// Everything else of the calling thread (owned by `cold`).
struct cold_state {
  std::vector<std::vector<std::uint32_t>> maps;  // one per region
  region regions[max_regions];
  std::uint32_t region_count = 0;
  std::vector<std::uint32_t>
      first_access_task;                       // per variable: the task number of its first access
  std::vector<std::uint32_t> last_store_task;  // per variable: the task number of its last store
  std::vector<std::uintptr_t> store_pc;        // per variable: return address of that store
  std::vector<watch_hit> hits;                 // this task's first accesses, reserved
  std::uint32_t task = 0;                      // this thread's current task number (0: none yet)
  const thread_snapshot* snapshot = nullptr;
  const std::atomic<bool>* watched = nullptr;
  std::uint32_t watched_size = 0;
  std::uintptr_t stack_lo = 0, stack_hi = 0;  // for the frame-pointer walk
};

[[gnu::tls_model("initial-exec")]] constinit thread_local hot_state hot;
[[gnu::tls_model("initial-exec")]] constinit thread_local cold_state* cold = nullptr;

void find_stack(cold_state& c) {
  pthread_attr_t attr;
  if (::pthread_getattr_np(::pthread_self(), &attr) != 0) return;
  void* addr = nullptr;
  std::size_t size = 0;
  if (::pthread_attr_getstack(&attr, &addr, &size) == 0) {
    c.stack_lo = reinterpret_cast<std::uintptr_t>(addr);
    c.stack_hi = c.stack_lo + size;
  }
  ::pthread_attr_destroy(&attr);
}

/// Return addresses of the instrumented function's callers, from the frame
/// pointers: up our own frames to the one whose return address is `ret`
/// (the callback's, or on_access's where the callback tail-called it); its
/// saved frame pointer is the accessing function's. Every step is checked to
/// stay on this thread's stack and go up it, so a frame without a frame
/// pointer ends the walk instead of derailing it.
[[gnu::noinline]] void walk_callers(const cold_state& c, std::uintptr_t ret, watch_hit& hit) {
  auto valid = [&c](std::uintptr_t next, std::uintptr_t current) {
    return next > current && next < c.stack_hi && next >= c.stack_lo && (next & 7U) == 0 &&
           next - current < (std::uintptr_t{1} << 20);
  };
  auto fp = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  int hops = 0;
  while (reinterpret_cast<const std::uintptr_t*>(fp)[1] != ret) {
    const std::uintptr_t next = *reinterpret_cast<const std::uintptr_t*>(fp);
    if (++hops > 4 || !valid(next, fp)) return;
    fp = next;
  }
  while (hit.caller_count < max_callers) {
    const std::uintptr_t next = *reinterpret_cast<const std::uintptr_t*>(fp);
    if (!valid(next, fp)) return;
    const std::uintptr_t caller = reinterpret_cast<const std::uintptr_t*>(next)[1];
    if (caller == 0) return;
    hit.callers[hit.caller_count++] = caller;
    fp = next;
  }
}

/// The slow path: `addr` is inside region `r` of this thread.
[[gnu::noinline]] void on_access(std::uintptr_t addr, std::uint32_t r, bool store,
                                 std::uintptr_t ret) noexcept {
  cold_state* c = cold;
  if (c == nullptr) return;
  const region& reg = hot.regions[r];
  const std::uint32_t tagged = reg.var_of[addr - reg.lo];
  if (tagged == 0) return;
  const std::uint32_t var = tagged - 1;
  if (store) {
    c->last_store_task[var] = c->task;
    c->store_pc[var] = ret;
  }
  if (c->first_access_task[var] == c->task) return;
  c->first_access_task[var] = c->task;
  if (var >= c->watched_size || !c->watched[var].load(std::memory_order_relaxed)) return;
  if (c->hits.size() == c->hits.capacity()) return;  // reserved for every variable: cannot happen
  first_access_count.fetch_add(1, std::memory_order_relaxed);
  watch_hit& hit = c->hits.emplace_back();
  hit.var = var;
  hit.insn_pc = ret - 1;  // inside the call to the callback, which has the access's source line
  hit.pc_after = ret;
  hit.known = store ? known_access::store : known_access::load;
  hit.changed = c->snapshot->changed(var);
  walk_callers(*c, ret, hit);
}

[[gnu::always_inline]] inline void check(const void* p, bool store, std::uintptr_t ret) noexcept {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  if (addr - hot.lo >= hot.span) return;  // the stack, the heap: almost every access
  const std::uint32_t n = hot.region_count;
  for (std::uint32_t r = 0; r < n; ++r) {
    if (addr - hot.regions[r].lo < hot.regions[r].size) [[unlikely]] {
      on_access(addr, r, store, ret);
      return;
    }
  }
}

}  // namespace

bool present() noexcept { return instrumented_modules.load(std::memory_order_acquire) > 0; }

std::uint64_t modules() noexcept { return instrumented_modules.load(std::memory_order_acquire); }

std::uint64_t first_accesses() noexcept {
  return first_access_count.load(std::memory_order_relaxed);
}

void bind(const thread_snapshot& snapshot) {
  if (cold == nullptr) {
    cold = new cold_state;  // per thread, kept for the thread's life (a worker's state is small)
    find_stack(*cold);
  }
  cold_state& c = *cold;
  const tls_layout& layout = *snapshot.layout();
  const std::size_t n = layout.variables.size();
  c.first_access_task.assign(n, 0);
  c.last_store_task.assign(n, 0);
  c.store_pc.assign(n, 0);
  c.hits.clear();
  c.hits.reserve(n);
  c.task = 1;

  // One region per module: from its first variable's byte to its last's.
  std::vector<std::uintptr_t> lo(layout.modules.size(), UINTPTR_MAX), hi(layout.modules.size(), 0);
  for (std::uint32_t v = 0; v < n; ++v) {
    const auto a = reinterpret_cast<std::uintptr_t>(snapshot.address(v));
    if (a == 0) continue;
    const std::uint32_t m = layout.variables[v].module;
    lo[m] = std::min(lo[m], a);
    hi[m] = std::max(hi[m], a + layout.variables[v].size);
  }
  c.maps.clear();
  c.region_count = 0;
  std::vector<std::int32_t> region_of(layout.modules.size(), -1);
  for (std::size_t m = 0; m < layout.modules.size() && c.region_count < max_regions; ++m) {
    if (hi[m] == 0) continue;
    region_of[m] = static_cast<std::int32_t>(c.region_count);
    c.maps.emplace_back(hi[m] - lo[m], 0U);
    c.regions[c.region_count++] = {lo[m], hi[m] - lo[m], nullptr};
  }
  for (std::uint32_t r = 0; r < c.region_count; ++r) c.regions[r].var_of = c.maps[r].data();
  for (std::uint32_t v = 0; v < n; ++v) {
    const auto a = reinterpret_cast<std::uintptr_t>(snapshot.address(v));
    const std::int32_t r = a == 0 ? -1 : region_of[layout.variables[v].module];
    if (r < 0) continue;
    std::uint32_t* map =
        c.maps[static_cast<std::size_t>(r)].data() + (a - lo[layout.variables[v].module]);
    std::fill(map, map + layout.variables[v].size, v + 1);
  }
}

void arm(const thread_snapshot& snapshot, const std::atomic<bool>* watched,
         std::uint32_t watched_size) noexcept {
  cold_state* c = cold;
  if (c == nullptr) return;
  c->snapshot = &snapshot;
  c->watched = watched;
  c->watched_size = watched_size;
  c->hits.clear();
  if (++c->task == 0) {  // wrapped: forget every old task number
    std::fill(c->first_access_task.begin(), c->first_access_task.end(), 0U);
    std::fill(c->last_store_task.begin(), c->last_store_task.end(), 0U);
    c->task = 1;
  }
  std::copy(c->regions, c->regions + c->region_count, hot.regions);
  std::uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (std::uint32_t r = 0; r < c->region_count; ++r) {
    lo = std::min(lo, c->regions[r].lo);
    hi = std::max(hi, c->regions[r].lo + c->regions[r].size);
  }
  hot.lo = lo;
  hot.span = hi > lo ? hi - lo : 0;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  hot.region_count = c->region_count;  // last: from here on the callbacks look
}

void disarm(std::vector<watch_hit>& hits) {
  hot.span = 0;
  hot.region_count = 0;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  cold_state* c = cold;
  if (c == nullptr) return;
  hits.insert(hits.end(), c->hits.begin(), c->hits.end());
  c->hits.clear();
}

std::uintptr_t last_store(std::uint32_t var) noexcept {
  const cold_state* c = cold;
  if (c == nullptr || var >= c->last_store_task.size() || c->last_store_task[var] != c->task)
    return 0;
  return c->store_pc[var];
}

}  // namespace ctxpool::diagnostics::detail::plain_tls::instrumented

// ---- the callbacks clang's trace-loads/trace-stores instrumentation calls ---------------
//
// Their names are SanitizerCoverage's (clang passes the address as a pointer
// to an integer of N bytes; a `const void*` receives it the same way).
// Defined here, the program links without clang's coverage runtime.

namespace ctxpool_sancov = ctxpool::diagnostics::detail::plain_tls::instrumented;

#define CTXPOOL_SANCOV_CALLBACKS(bytes)                                                            \
  extern "C" [[gnu::used]] void __sanitizer_cov_load##bytes(const void* p) {                       \
    ctxpool_sancov::check(p, false,                                                                \
                          reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));          \
  }                                                                                                \
  extern "C" [[gnu::used]] void __sanitizer_cov_store##bytes(const void* p) {                      \
    ctxpool_sancov::check(p, true, reinterpret_cast<std::uintptr_t>(__builtin_return_address(0))); \
  }

CTXPOOL_SANCOV_CALLBACKS(1)
CTXPOOL_SANCOV_CALLBACKS(2)
CTXPOOL_SANCOV_CALLBACKS(4)
CTXPOOL_SANCOV_CALLBACKS(8)
CTXPOOL_SANCOV_CALLBACKS(16)

#undef CTXPOOL_SANCOV_CALLBACKS

/// The coverage kind's module constructor (inline-8bit-counters): called once
/// per instrumented module as it is loaded. The counters themselves are not
/// used; the call says the module is instrumented.
extern "C" [[gnu::used]] void __sanitizer_cov_8bit_counters_init(char* /*begin*/, char* /*end*/) {
  ctxpool_sancov::instrumented_modules.fetch_add(1, std::memory_order_release);
}
