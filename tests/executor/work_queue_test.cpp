// The task queues on their own, under concurrent use: every task comes out
// exactly once, and in the order each queue promises (work_queue.hpp).
#include <ctxpool/detail/work_queue.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <iterator>
#include <thread>
#include <vector>

namespace {

using ctxpool::detail::batch_inbox;
using ctxpool::detail::injection_queue;
using ctxpool::detail::task_node;

/// A queue entry that only carries its number; never run.
struct numbered_node : task_node {
  explicit numbered_node(int n) noexcept : task_node(nullptr), number(n) {}
  int number;
};

int number_of(task_node* node) { return static_cast<numbered_node*>(node)->number; }

/// How many tasks did not come out exactly once.
int not_taken_once(const std::vector<std::atomic<int>>& seen) {
  int wrong = 0;
  for (const std::atomic<int>& count : seen) wrong += count.load() != 1 ? 1 : 0;
  return wrong;
}

}  // namespace

TEST_CASE(
    "an inbox hands every task out once, oldest first, to its owner and other takers at once") {
  constexpr int tasks = 200'000;
  std::deque<numbered_node> nodes;  // nodes do not move: a deque never moves them
  for (int i = 0; i < tasks; ++i) nodes.emplace_back(i);

  batch_inbox inbox;
  std::vector<std::atomic<int>> seen(tasks);
  std::atomic<int> taken{0};
  std::atomic<bool> out_of_order{false};
  int next_to_fill = 0;  // the owner's alone
  const auto take_all = [&](bool owner) {
    int last = -1;
    while (taken.load(std::memory_order_relaxed) < tasks) {
      task_node* node = inbox.take();
      if (node == nullptr) {
        // Empty: the owner refills it, as a worker does from the injection queue.
        if (owner && next_to_fill < tasks) {
          task_node* batch[batch_inbox::capacity];
          std::uint32_t count = 0;
          while (count < batch_inbox::capacity && next_to_fill < tasks) {
            batch[count++] = &nodes[static_cast<std::size_t>(next_to_fill++)];
          }
          inbox.fill(batch, count);
        }
        continue;
      }
      const int n = number_of(node);
      if (n <= last) out_of_order = true;  // each taker sees the queue's order
      last = n;
      seen[static_cast<std::size_t>(n)].fetch_add(1, std::memory_order_relaxed);
      taken.fetch_add(1, std::memory_order_relaxed);
    }
  };
  std::vector<std::thread> others;
  for (int i = 0; i < 3; ++i) others.emplace_back([&] { take_all(false); });
  take_all(true);
  for (std::thread& t : others) t.join();

  CHECK(taken == tasks);
  CHECK_FALSE(out_of_order);
  CHECK(not_taken_once(seen) == 0);
}

TEST_CASE("the injection queue's batches keep every producer's order and lose nothing") {
  constexpr int producers = 3;
  constexpr int per_producer = 60'000;
  std::deque<numbered_node> nodes;
  for (int i = 0; i < producers * per_producer; ++i) nodes.emplace_back(i);

  injection_queue queue;
  std::vector<std::thread> pushers;
  for (int p = 0; p < producers; ++p) {
    pushers.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i) {
        queue.push(&nodes[static_cast<std::size_t>(p * per_producer + i)]);
      }
    });
  }
  // Two consumers taking batches of up to 17, as workers do.
  std::atomic<int> received{0};
  std::atomic<bool> out_of_order{false};
  std::vector<std::atomic<int>> seen(producers * per_producer);
  const auto consume = [&] {
    std::vector<int> last(producers, -1);
    task_node* batch[batch_inbox::capacity + 1];
    while (received.load(std::memory_order_relaxed) < producers * per_producer) {
      bool contended = false;
      const std::size_t count = queue.try_pop(batch, std::size(batch), contended);
      for (std::size_t i = 0; i < count; ++i) {
        const int n = number_of(batch[i]);
        const int producer = n / per_producer;
        if (n <= last[static_cast<std::size_t>(producer)]) out_of_order = true;
        last[static_cast<std::size_t>(producer)] = n;
        seen[static_cast<std::size_t>(n)].fetch_add(1, std::memory_order_relaxed);
      }
      received.fetch_add(static_cast<int>(count), std::memory_order_relaxed);
    }
  };
  std::thread other(consume);
  consume();
  other.join();
  for (std::thread& t : pushers) t.join();

  CHECK(received == producers * per_producer);
  CHECK_FALSE(out_of_order);
  CHECK(not_taken_once(seen) == 0);
  CHECK(queue.try_pop() == nullptr);  // and nothing left behind
}
