// The futex side of the wake-up protocol (detail/parking.hpp), driven
// directly: workers that announce, take a last look and either withdraw or
// park, against a waker that chooses them. A worker the waker chose must
// know it was chosen and why, must no longer be registered, and must be
// counted as spinning exactly once.
#include <ctxpool/detail/parking.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

#include "support/watchdog.hpp"

namespace {

using ctxpool::detail::idle_workers;

#if CTXPOOL_SANITIZED
constexpr int rounds = 4000;
#else
constexpr int rounds = 40000;
#endif

}  // namespace

TEST_CASE("a worker chosen by wake_one knows why, is no longer registered, and is counted once") {
  // The race this once lost a wake-up to: the waker chose a worker, and
  // before it wrote the worker's reason word the worker withdrew, ran, and
  // registered again; the late write then woke the new registration, which
  // returned from park still listed as parked and uncounted, so the
  // spinning count went below zero and submitters stopped waking anyone.
  constexpr std::size_t workers = 3;
  idle_workers idle{workers};
  std::atomic<std::size_t> finished{0};
  std::atomic<int> unknown_reason{0};
  std::atomic<int> still_registered{0};

  ctxpool_test::finishes_within("workers parking against a waker", [&] {
    std::vector<std::thread> threads;
    for (std::size_t index = 0; index < workers; ++index) {
      threads.emplace_back([&, index] {
        for (int round = 0; round < rounds; ++round) {
          idle.prepare_park(index);
          if (round % 2 == 0) {
            // The last look found work: withdraw, unless a waker chose us.
            if (idle.cancel_park(index)) continue;
          } else {
            idle.park(index);
            // Chosen means taken off the list: withdrawing now finds nothing.
            if (idle.cancel_park(index)) ++still_registered;
          }
          if (!idle.woken_for_io_role(index)) ++unknown_reason;
          idle.stop_spinning();  // the search a chosen worker makes, ended
        }
        finished.fetch_add(1);
      });
    }
    // Every park ends: the waker keeps choosing until every worker is done.
    while (finished.load() < workers) {
      idle.wake_one(idle_workers::reason::take_io_role);
    }
    for (std::thread& thread : threads) thread.join();
  });

  CHECK(unknown_reason.load() == 0);
  CHECK(still_registered.load() == 0);
  // Every choice counted a spinner once and every chosen worker ended it once.
  CHECK_FALSE(idle.anyone_spinning());
}
