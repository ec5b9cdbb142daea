// Task-block recycling (detail/task_blocks.hpp): the submitters' spare
// lists and the workers' magazines.
#include <ctxpool/detail/task_blocks.hpp>

#include <new>
#include <utility>

#include <ctxpool/detail/config.hpp>

namespace ctxpool::detail {

namespace {

/// Frees every block of a list of magazines, the magazines included.
void free_magazines(block_magazine* list, std::size_t block_size) noexcept {
  while (list != nullptr) {
    block_magazine* next = list->next;
    for (std::size_t i = 0; i < list->count; ++i) small_free(list->addresses()[i], block_size);
    small_free(list, block_size);
    list = next;
  }
}

/// Blocks a submitter took from a pool's recycled stacks and has not used
/// yet: a list of magazines per size class, uncapped (it holds at most what
/// the pool's workers freed), emptied when the thread ends. Not tied to one
/// pool: a block is plain small_alloc memory.
struct spare_task_blocks {
  block_magazine* heads[small_alloc_classes] = {};
  spare_task_blocks() = default;
  spare_task_blocks(const spare_task_blocks&) = delete;
  spare_task_blocks& operator=(const spare_task_blocks&) = delete;
  ~spare_task_blocks() {
    for (std::size_t c = 0; c < small_alloc_classes; ++c) {
      free_magazines(heads[c], small_alloc_class_size(c));
    }
  }
};
thread_local spare_task_blocks spare_blocks;

/// Full magazines a worker keeps before handing them back.
constexpr std::uint32_t recycle_batch = 4;

}  // namespace

void* task_block_recycler::allocate(std::size_t size) {
  if (void* block = small_alloc_cached(size)) return block;
  if (!CTXPOOL_ASAN && size <= small_alloc_max) {
    const std::size_t c = small_alloc_class(size);
    block_magazine*& spare = spare_blocks.heads[c];
    if (spare == nullptr && recycled_[c].load(std::memory_order_relaxed) != nullptr) {
      spare = recycled_[c].exchange(nullptr, std::memory_order_acquire);
    }
    if (block_magazine* magazine = spare) {
      if (magazine->count != 0) return magazine->addresses()[--magazine->count];
      spare = magazine->next;  // the magazine itself is the last block it hands out
      return magazine;
    }
  }
  return small_alloc(size);
}

void task_block_recycler::free_on_worker(freed_task_blocks& mine, void* block,
                                         std::size_t size) noexcept {
  if (CTXPOOL_ASAN || size > small_alloc_max) {
    small_free(block, size);
    return;
  }
  const std::size_t c = small_alloc_class(size);
  freed_blocks& freed = mine.by_class[c];
  block_magazine* magazine = freed.filling;
  if (magazine == nullptr) {
    magazine = ::new (block) block_magazine{nullptr, 0};
    freed.filling = magazine;
  } else {
    magazine->addresses()[magazine->count++] = block;
  }
  const std::size_t capacity = block_magazine::capacity(small_alloc_class_size(c));
  CTXPOOL_ASSERT(magazine->count <= capacity, "a magazine overfilled");
  if (magazine->count < capacity) return;
  freed.filling = nullptr;
  if (freed.full == nullptr) freed.full_tail = magazine;
  magazine->next = freed.full;
  freed.full = magazine;
  if (++freed.full_count == recycle_batch) flush_class(mine, c);
}

void task_block_recycler::flush_class(freed_task_blocks& mine, std::size_t size_class) noexcept {
  freed_blocks& freed = mine.by_class[size_class];
  if (freed.filling != nullptr) {  // a partial one too (a full batch leaves none)
    if (freed.full == nullptr) freed.full_tail = freed.filling;
    freed.filling->next = freed.full;
    freed.full = std::exchange(freed.filling, nullptr);
  }
  if (freed.full == nullptr) return;
  std::atomic<block_magazine*>& stack = recycled_[size_class];
  freed.full_tail->next = stack.load(std::memory_order_relaxed);
  while (!stack.compare_exchange_weak(freed.full_tail->next, freed.full, std::memory_order_release,
                                      std::memory_order_relaxed)) {
  }
  freed = {};
}

void task_block_recycler::flush(freed_task_blocks& mine) noexcept {
  for (std::size_t c = 0; c < small_alloc_classes; ++c) flush_class(mine, c);
}

void task_block_recycler::drain() noexcept {
  for (std::size_t c = 0; c < small_alloc_classes; ++c) {
    free_magazines(recycled_[c].exchange(nullptr, std::memory_order_acquire),
                   small_alloc_class_size(c));
  }
}

}  // namespace ctxpool::detail
