// A correct program that uses common libraries on the pool: protobuf arenas
// and abseil containers (Debian's libprotobuf-dev and libabsl-dev), built
// without NDEBUG, so that abseil's hash tables seed themselves from a
// per-thread counter. Every task sets up its own state; nothing of one task
// is read by another. Under CTXPOOL_DIAGNOSTICS=residue it must exit 0: the
// libraries' per-thread caches are in the shipped default suppressions.
//
// Usage: plain_libraries_child <workers>.
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <absl/strings/cord.h>
#include <google/protobuf/arena.h>

#include <ctxpool/executor.hpp>

#ifdef NDEBUG
#error "built without NDEBUG on purpose: abseil's debug hash-table seeding is what is tested"
#endif

namespace {

long handle_request(int i) {
  google::protobuf::Arena arena;
  auto* name = google::protobuf::Arena::Create<std::string>(&arena, "request-" + std::to_string(i));
  absl::flat_hash_map<std::string, int> counts;
  for (int k = 0; k < 16; ++k) counts[*name + std::to_string(k)] = k;
  absl::Cord body(std::string(100, 'b'));
  body.Append(*name);
  long sum = static_cast<long>(body.size());
  for (const auto& [key, value] : counts) sum += value + static_cast<long>(key.size());
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  const int workers = argc > 1 ? std::atoi(argv[1]) : 2;
  if (workers < 1) return 2;
  ctxpool::thread_pool pool{static_cast<std::size_t>(workers)};
  std::vector<std::future<long>> done;
  for (int i = 0; i < 40; ++i) done.push_back(pool.submit([i] { return handle_request(i); }));
  long total = 0;
  for (auto& f : done) total += f.get();
  pool.join();
  std::printf("%ld\n", total);
  return total > 0 ? 0 : 1;
}
