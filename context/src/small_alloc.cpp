// small_alloc: per-thread free lists in 16-byte size classes, refilled from a
// process-wide depot of blocks carved out of large chunks.
//
// Carving matters for memory, not speed: a queued task is one 64-byte block,
// and ::operator new would add its own 16-byte header to each (a million
// queued tasks took 80 MB instead of 64). Chunks are kept for the life of the
// process and their blocks reused by every thread, as in a slab allocator;
// a block may be freed on any thread.
//
// Chunks come straight from the OS, page-aligned and without a header, and
// are carved one batch at a time: a block costs exactly its class size of
// resident memory, never more (a malloc'ed chunk's header made it 64.04 bytes
// and pushed every later block off its cache line), and the pages of a chunk
// no one has asked for yet are never touched.
#include <ctxpool/detail/config.hpp>
#include <ctxpool/detail/small_alloc.hpp>

#include <cstdint>
#include <mutex>
#include <new>

#if __has_include(<sys/mman.h>)
#include <sys/mman.h>
#define CTXPOOL_HAVE_MMAP 1
#else
#define CTXPOOL_HAVE_MMAP 0
#endif

namespace ctxpool::detail {

namespace {

struct free_block {
  free_block* next;
};

/// The last block of a non-empty list.
free_block* last_of(free_block* head) noexcept {
  while (head->next != nullptr) head = head->next;
  return head;
}

/// Blocks a thread keeps per class before it hands a batch back to the depot.
constexpr std::uint16_t max_cached_per_class = 256;
/// Blocks moved between a thread and the depot at a time.
constexpr std::uint16_t depot_batch = 64;
/// Bytes taken from the OS at a time (a multiple of any page size).
constexpr std::size_t chunk_bytes = std::size_t{256} * 1024;

/// A page-aligned chunk of chunk_bytes that is never given back. Where there
/// is no mmap, an over-aligned ::operator new stands in (its header then
/// costs one page-aligned gap per chunk, not a word per block).
char* new_chunk() {
#if CTXPOOL_HAVE_MMAP
  void* chunk =
      ::mmap(nullptr, chunk_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (chunk == MAP_FAILED) throw std::bad_alloc();
  return static_cast<char*>(chunk);
#else
  return static_cast<char*>(::operator new(chunk_bytes, std::align_val_t{4096}));
#endif
}

/// The blocks no thread caches, per class. A thread goes here once per batch,
/// so a mutex is cheap enough and keeps the lists free of ABA problems.
class depot {
 public:
  /// Up to depot_batch blocks of class `c` as a list, carving new ones when
  /// the depot has none; `count` receives how many.
  free_block* take(std::size_t c, std::uint16_t& count) {
    std::lock_guard lock(mutex_);
    if (heads_[c] == nullptr) return carve(c, count);
    free_block* head = heads_[c];
    free_block* last = head;
    count = 1;
    while (count < depot_batch && last->next != nullptr) {
      last = last->next;
      ++count;
    }
    heads_[c] = last->next;
    last->next = nullptr;
    return head;
  }

  /// Takes back a list of blocks of class `c` from `head` to `last`.
  void give(std::size_t c, free_block* head, free_block* last) noexcept {
    std::lock_guard lock(mutex_);
    last->next = heads_[c];
    heads_[c] = head;
  }

 private:
  /// The uncarved rest of a class's current chunk.
  struct carve_cursor {
    char* next = nullptr;
    char* end = nullptr;
  };

  /// A list of up to depot_batch fresh blocks of class `c`, the first ones of
  /// a new chunk when the current one cannot hold a block (its tail, under
  /// one block, is left unused).
  free_block* carve(std::size_t c, std::uint16_t& count) {
    const std::size_t size = small_alloc_class_size(c);
    carve_cursor& cursor = cursors_[c];
    if (static_cast<std::size_t>(cursor.end - cursor.next) < size) {
      cursor.next = new_chunk();
      cursor.end = cursor.next + chunk_bytes;
    }
    const std::size_t room = static_cast<std::size_t>(cursor.end - cursor.next) / size;
    count = static_cast<std::uint16_t>(room < depot_batch ? room : depot_batch);
    free_block* head = nullptr;
    for (std::size_t i = count; i-- > 0;) {
      auto* block = reinterpret_cast<free_block*>(cursor.next + i * size);
      block->next = head;
      head = block;
    }
    cursor.next += count * size;
    return head;
  }

  std::mutex mutex_;
  free_block* heads_[small_alloc_classes] = {};
  carve_cursor cursors_[small_alloc_classes] = {};
};

/// Never destroyed: threads return their blocks to it while they exit, which
/// may be after static destructors have run.
depot& the_depot() {
  static depot* instance = new depot;
  return *instance;
}

// Plain data so that it needs no TLS wrapper; given back by `cache_drainer`.
struct alloc_cache {
  free_block* heads[small_alloc_classes];
  std::uint16_t counts[small_alloc_classes];
  bool drainer_armed;
  bool dead;  // the thread is exiting: free to the depot directly from now on
};
constinit thread_local alloc_cache alloc_tls{};

void give_all(std::size_t c) noexcept {
  free_block* head = alloc_tls.heads[c];
  if (head == nullptr) return;
  the_depot().give(c, head, last_of(head));
  alloc_tls.heads[c] = nullptr;
  alloc_tls.counts[c] = 0;
}

struct cache_drainer {
  ~cache_drainer() {
    alloc_tls.dead = true;
    for (std::size_t c = 0; c < small_alloc_classes; ++c) give_all(c);
  }
};

/// True when this thread has a cache to use: arms the drain at thread exit on
/// first use, false once the thread is exiting.
bool thread_cache_usable() noexcept {
  if (CTXPOOL_LIKELY(alloc_tls.drainer_armed)) return !alloc_tls.dead;
  if (alloc_tls.dead) return false;
  alloc_tls.drainer_armed = true;
  static thread_local cache_drainer drainer;  // constructed once per thread, drains at exit
  (void)drainer;
  return true;
}

/// A block of class `c` from this thread's cache, or null.
free_block* pop_cached(std::size_t c) noexcept {
  free_block* block = alloc_tls.heads[c];
  if (block != nullptr) {
    alloc_tls.heads[c] = block->next;
    --alloc_tls.counts[c];
  }
  return block;
}

}  // namespace

void* small_alloc(std::size_t size) {
  // Blocks always span their whole size class, so that a caller recycling them
  // by class (the pool's task blocks) may reuse one for any size in it; only
  // ASan, for which nothing is recycled, gets exact sizes to check overflows.
  if constexpr (CTXPOOL_SANITIZED)
    return ::operator new(CTXPOOL_ASAN ? size : small_alloc_rounded(size));
  if (size == 0 || size > small_alloc_max) return ::operator new(size);
  const std::size_t c = small_alloc_class(size);
  if (free_block* block = pop_cached(c)) return block;
  std::uint16_t count = 0;
  free_block* batch = the_depot().take(c, count);
  if (!thread_cache_usable()) {
    // Exiting: keep one block, hand the rest straight back.
    if (batch->next != nullptr) the_depot().give(c, batch->next, last_of(batch->next));
    return batch;
  }
  alloc_tls.heads[c] = batch->next;
  alloc_tls.counts[c] = static_cast<std::uint16_t>(count - 1);
  return batch;
}

void* small_alloc_cached(std::size_t size) noexcept {
  if constexpr (CTXPOOL_SANITIZED) return nullptr;
  if (size == 0 || size > small_alloc_max) return nullptr;
  return pop_cached(small_alloc_class(size));
}

void small_free(void* block, std::size_t size) noexcept {
  if constexpr (CTXPOOL_SANITIZED) {
    ::operator delete(block);
    return;
  }
  if (block == nullptr) return;
  if (size == 0 || size > small_alloc_max) {
    ::operator delete(block);
    return;
  }
  const std::size_t c = small_alloc_class(size);
  auto* node = static_cast<free_block*>(block);
  if (!thread_cache_usable()) {
    // No cache to keep it in: the thread is exiting.
    node->next = nullptr;
    the_depot().give(c, node, node);
    return;
  }
  node->next = alloc_tls.heads[c];
  alloc_tls.heads[c] = node;
  if (++alloc_tls.counts[c] < max_cached_per_class) return;
  // Full: hand all but the newest depot_batch blocks back in one go.
  free_block* keep_last = node;
  for (std::uint16_t i = 1; i < depot_batch; ++i) keep_last = keep_last->next;
  free_block* head = keep_last->next;
  keep_last->next = nullptr;
  alloc_tls.counts[c] = depot_batch;
  the_depot().give(c, head, last_of(head));
}

}  // namespace ctxpool::detail
