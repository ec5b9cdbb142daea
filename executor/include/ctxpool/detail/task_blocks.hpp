// Task-block recycling: the memory of queued task nodes, carried back from
// the workers that free it to the threads that submit.
//
// A submitter outside the pool never gets its blocks back from the workers
// that free them, so without recycling every task would pay a malloc/free
// pair across threads. Each worker gathers the blocks it frees into
// magazines (one freed block holding the addresses of others of its size
// class) and hands full ones to a shared stack per size class a batch at a
// time; a submitter takes a whole stack with one exchange (so there is no
// ABA problem) and keeps it as a thread-local spare list.
//
// @par Thread safety
// `allocate` may be called from any thread. `free_on_worker` and `flush`
// are called by the worker that owns the `freed_task_blocks` they are given.
//
// @par Lifetime
// Blocks still on the shared stacks are freed with the recycler; blocks a
// submitter took are plain small_alloc memory, freed when its thread ends.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <ctxpool/detail/small_alloc.hpp>

namespace ctxpool::detail {

/// Freed task blocks on their way back to submitters: one freed block holds
/// the addresses of others of its size class.
///
/// A block a worker freed sits in that worker's cache. Were the blocks linked
/// through themselves, the submitter would read each one's link (a transfer
/// from the worker's core) before writing its next task there (a second
/// one); with the addresses gathered in one block, it reads one line for
/// several blocks and the others only move once, when it writes them.
struct block_magazine {
  block_magazine* next;  // the next magazine of a list
  std::size_t count;     // addresses held, after this header
  [[nodiscard]] void** addresses() noexcept { return reinterpret_cast<void**>(this + 1); }
  /// How many addresses a block of `block_size` bytes holds besides its header.
  [[nodiscard]] static constexpr std::size_t capacity(std::size_t block_size) noexcept {
    return (block_size - sizeof(block_magazine)) / sizeof(void*);
  }
};
static_assert(sizeof(block_magazine) <= 16, "the smallest small_alloc block must hold a magazine");

/// The blocks of one size class a worker freed and has not handed back yet.
struct freed_blocks {
  block_magazine* filling = nullptr;  // the magazine taking addresses now
  block_magazine* full = nullptr;     // full magazines, a list
  block_magazine* full_tail = nullptr;
  std::uint32_t full_count = 0;
};

/// A worker's freed blocks, per size class. Only that worker touches them.
struct freed_task_blocks {
  freed_blocks by_class[small_alloc_classes] = {};
};

/// The shared end of the recycling: one stack of full magazines per size
/// class, which workers push batches onto and submitters take whole.
class task_block_recycler {
 public:
  task_block_recycler() noexcept = default;
  ~task_block_recycler() { drain(); }
  task_block_recycler(const task_block_recycler&) = delete;
  task_block_recycler& operator=(const task_block_recycler&) = delete;

  /// Memory for a task node: the calling thread's small_alloc cache, else
  /// its spare recycled blocks, refilled from the shared stacks.
  void* allocate(std::size_t size);

  /// Returns a block freed on the worker owning `mine`: it goes into a
  /// magazine, and full magazines go to the shared stacks a batch at a time.
  /// Under ASan every block goes straight back to the allocator, so that it
  /// sees each use after free (TSan keeps the recycling, to check it).
  void free_on_worker(freed_task_blocks& mine, void* block, std::size_t size) noexcept;

  /// Hands every block in `mine` to the shared stacks (before the worker
  /// sleeps, and when it ends).
  void flush(freed_task_blocks& mine) noexcept;

 private:
  void flush_class(freed_task_blocks& mine, std::size_t size_class) noexcept;
  void drain() noexcept;

  alignas(64) std::atomic<block_magazine*> recycled_[small_alloc_classes] = {};
};

}  // namespace ctxpool::detail
