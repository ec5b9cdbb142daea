// The block allocator under context maps and queued tasks: blocks never
// overlap, survive being freed on another thread, and a 64-byte block (a
// queued task) is one cache line.
#include <ctxpool/detail/config.hpp>
#include <ctxpool/detail/small_alloc.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

using ctxpool::detail::small_alloc;
using ctxpool::detail::small_free;

constexpr std::size_t task_block = 64;
// More blocks than one chunk holds, so that carving crosses chunks.
constexpr std::size_t many = 20'000;

}  // namespace

TEST_CASE("small_alloc blocks never overlap, across chunk boundaries, and keep what is written") {
  std::vector<unsigned char*> blocks;
  blocks.reserve(many);
  for (std::size_t i = 0; i < many; ++i) {
    auto* block = static_cast<unsigned char*>(small_alloc(task_block));
    std::memset(block, static_cast<int>(i & 0xff), task_block);
    blocks.push_back(block);
  }
  std::vector<unsigned char*> sorted = blocks;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    REQUIRE(sorted[i] >= sorted[i - 1] + task_block);
  }
  for (std::size_t i = 0; i < many; ++i) {
    const auto expected = static_cast<unsigned char>(i & 0xff);
    REQUIRE(blocks[i][0] == expected);
    REQUIRE(blocks[i][task_block - 1] == expected);
  }
  for (unsigned char* block : blocks) small_free(block, task_block);
}

TEST_CASE("a 64-byte small_alloc block is one cache line") {
  if constexpr (CTXPOOL_SANITIZED) {
    MESSAGE("sanitized build: every block comes from ::operator new, aligned to 16 only");
    return;
  }
  std::vector<void*> blocks;
  for (std::size_t i = 0; i < many; ++i) blocks.push_back(small_alloc(task_block));
  for (void* block : blocks) REQUIRE(reinterpret_cast<std::uintptr_t>(block) % 64 == 0);
  for (void* block : blocks) small_free(block, task_block);
}

TEST_CASE("blocks freed on another thread are reused without corruption") {
  // A worker frees the blocks a submitter allocated; the submitter's later
  // allocations draw on them through the shared depot.
  for (int round = 0; round < 4; ++round) {
    std::vector<void*> blocks;
    for (std::size_t i = 0; i < many / 4; ++i) blocks.push_back(small_alloc(task_block));
    std::thread freeing([&blocks] {
      for (void* block : blocks) small_free(block, task_block);
    });
    freeing.join();
  }
  std::vector<unsigned char*> fresh;
  for (std::size_t i = 0; i < many / 4; ++i) {
    auto* block = static_cast<unsigned char*>(small_alloc(task_block));
    std::memset(block, 0x5a, task_block);
    fresh.push_back(block);
  }
  std::sort(fresh.begin(), fresh.end());
  for (std::size_t i = 1; i < fresh.size(); ++i) REQUIRE(fresh[i] >= fresh[i - 1] + task_block);
  for (unsigned char* block : fresh) small_free(block, task_block);
}
