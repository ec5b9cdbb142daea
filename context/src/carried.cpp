// The registry of carried thread_locals, and capturing, installing and restoring them.
#include <ctxpool/carried_thread_local.hpp>

#include <array>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace ctxpool::detail {

namespace {

constexpr std::uint32_t max_carried = 64;

// Append-only: an entry is written before the count that publishes it, and
// never changes afterwards, so readers need no lock.
constinit std::array<carried_entry, max_carried> carried_table{};
constinit std::mutex carried_mutex;

[[nodiscard]] std::uint32_t published_count() noexcept {
  return carried_count.load(std::memory_order_acquire);
}

}  // namespace

void register_carried(carried_entry entry) {
  // Like the empty value, the name lives as long as the registration: forever.
  entry.name = *new std::string(entry.name);
  std::lock_guard lock(carried_mutex);
  const std::uint32_t count = carried_count.load(std::memory_order_relaxed);
  if (count == max_carried) {
    throw std::length_error(
        "ctxpool: more than 64 thread_locals registered with carry_thread_local");
  }
  carried_table[count] = entry;
  carried_count.store(count + 1, std::memory_order_release);
}

std::vector<std::string> carried_thread_local_names() {
  const std::uint32_t count = published_count();
  std::vector<std::string> names;
  names.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) names.emplace_back(carried_table[i].name);
  return names;
}

map_node* capture_carried(map_node* root) noexcept {
  const std::uint32_t count = published_count();
  for (std::uint32_t i = 0; i < count; ++i) {
    const carried_entry& entry = carried_table[i];
    map_node* with_value = map_insert(root, entry.read(entry.var_id));
    map_release(root);
    root = with_value;
  }
  return root;
}

map_node* install_carried(const map_node* root) noexcept {
  map_node* saved = capture_carried(nullptr);
  const std::uint32_t count = published_count();
  for (std::uint32_t i = 0; i < count; ++i) {
    const carried_entry& entry = carried_table[i];
    const value_base* value = map_find(root, entry.var_id);
    entry.write((value != nullptr ? value : entry.empty)->data());
  }
  return saved;
}

void restore_carried(map_node* saved) noexcept {
  const std::uint32_t count = published_count();
  for (std::uint32_t i = 0; i < count; ++i) {
    const carried_entry& entry = carried_table[i];
    // A thread_local registered while this context was entered was not saved.
    if (const value_base* value = map_find(saved, entry.var_id)) entry.write(value->data());
  }
  map_release(saved);
}

}  // namespace ctxpool::detail
