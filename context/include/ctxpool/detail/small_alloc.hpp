// Thread-caching allocator for the small, short-lived blocks of context maps.
#pragma once

#include <cstddef>

namespace ctxpool::detail {

/// Largest block served from the per-thread caches; larger ones go to ::operator new.
inline constexpr std::size_t small_alloc_max = 256;

/// Allocates `size` bytes aligned for any scalar type; the block is usable up
/// to small_alloc_rounded(size) bytes (except under ASan).
///
/// Blocks of up to small_alloc_max bytes are recycled through per-thread free
/// lists, because a context `set`/`reset` pair allocates and frees two of them
/// and the general-purpose allocator would dominate its cost. The lists refill
/// from, and overflow to, a process-wide depot of blocks carved from
/// page-aligned chunks without a per-block header (so a block whose size is a
/// power of two is aligned to it: a 64-byte task is one cache line); chunks
/// are kept for the life of the process. A block may be freed on any thread.
/// Under ASan or TSan every call goes to ::operator new so the sanitizers see
/// each allocation.
void* small_alloc(std::size_t size);

/// A block from this thread's cache, or nullptr when the cache for that size
/// is empty (or the size is not cached). Lets a caller with a cheaper refill
/// than ::operator new try the cache first.
void* small_alloc_cached(std::size_t size) noexcept;

/// Blocks are cached in classes of this many bytes: class c holds blocks of
/// (c + 1) * small_alloc_class_width bytes.
inline constexpr std::size_t small_alloc_class_width = 16;
inline constexpr std::size_t small_alloc_classes = small_alloc_max / small_alloc_class_width;

/// The class of a cached size (1 to small_alloc_max bytes).
[[nodiscard]] constexpr std::size_t small_alloc_class(std::size_t size) noexcept {
  return (size + small_alloc_class_width - 1) / small_alloc_class_width - 1;
}

/// The size of the blocks of class `c`.
[[nodiscard]] constexpr std::size_t small_alloc_class_size(std::size_t c) noexcept {
  return (c + 1) * small_alloc_class_width;
}

/// The size small_alloc really allocates for `size` (its class's size).
[[nodiscard]] constexpr std::size_t small_alloc_rounded(std::size_t size) noexcept {
  return size == 0 || size > small_alloc_max ? size
                                             : small_alloc_class_size(small_alloc_class(size));
}

/// Frees a block from small_alloc; `size` must be the size it was allocated with.
void small_free(void* block, std::size_t size) noexcept;

}  // namespace ctxpool::detail
