// protocol_step(): see detail/interleave.hpp. Compiled in every build; empty
// unless CTXPOOL_INTERLEAVE_PROTOCOL is defined.
#include <ctxpool/detail/interleave.hpp>

#if defined(CTXPOOL_INTERLEAVE_PROTOCOL)

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>

namespace ctxpool::detail {

namespace {

std::uint64_t first_seed() noexcept {
  if (const char* text = std::getenv("CTXPOOL_INTERLEAVE_SEED")) {
    return std::strtoull(text, nullptr, 10);
  }
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

/// A per-thread xorshift64*, seeded from the process seed and the order in
/// which threads first reach a step.
std::uint64_t next_random() noexcept {
  static const std::uint64_t process_seed = first_seed();
  static std::atomic<std::uint64_t> threads{0};
  thread_local std::uint64_t state =
      (process_seed ^ (0x9e3779b97f4a7c15ULL * (threads.fetch_add(1) + 1))) | 1;
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545f4914f6cdd1dULL;
}

}  // namespace

void protocol_step() noexcept {
  const std::uint64_t r = next_random();
  switch (r % 16) {
    case 0:
    case 1:
    case 2: std::this_thread::yield(); break;
    case 3:
    case 4:
      for (std::uint64_t i = (r >> 8) % 256; i != 0; --i) {
        std::atomic_signal_fence(std::memory_order_seq_cst);  // kept: a short busy wait
      }
      break;
    case 5: std::this_thread::sleep_for(std::chrono::microseconds(1 + (r >> 8) % 50)); break;
    default: break;  // most steps run straight through, as in production
  }
}

}  // namespace ctxpool::detail

#endif
