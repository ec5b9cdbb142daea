// The registry of carried thread_locals and the hooks that capture and install them.
//
// A carried thread_local (see <ctxpool/carried_thread_local.hpp>) travels
// inside context maps, under a variable id of its own: capturing a snapshot
// adds the thread's current values to the snapshot's map, and entering a
// context installs the values its map holds, saving the thread's own values
// to put back on leaving. Both hooks sit behind one relaxed load and a branch
// (`carrying()`), so a program that registers none pays nothing else.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <ctxpool/detail/map.hpp>

namespace ctxpool::detail {

/// One registered thread_local, type-erased.
struct carried_entry {
  std::string_view name;    // the variable's name, for residue diagnostics (stored forever)
  std::uint32_t var_id;     // keys the variable's value in context maps
  const value_base* empty;  // installed where a context holds no value (owned forever)
  /// A new value (one reference, id `var_id`) holding the calling thread's current value.
  const value_base* (*read)(std::uint32_t var_id);
  /// Stores `*value` (a T) into the calling thread's variable.
  void (*write)(const void* value);
};

/// How many carried thread_locals are registered (they are never removed).
inline constinit std::atomic<std::uint32_t> carried_count{0};

/// Whether any thread_local is carried: the one test on the hot paths.
[[nodiscard]] inline bool carrying() noexcept {
  return carried_count.load(std::memory_order_relaxed) != 0;
}

/// Registers `entry`, keeping a copy of its name.
/// @throws std::length_error past the registry's capacity.
void register_carried(carried_entry entry);

/// The names of the carried thread_locals: residue diagnostics treats them as
/// it treats watched ones (their values are put back when a task ends).
[[nodiscard]] std::vector<std::string> carried_thread_local_names();

/// `root` (whose reference is adopted) with the calling thread's current
/// value of every carried thread_local added; one reference to the result.
/// Terminates if memory runs out (snapshots are taken in noexcept paths).
[[nodiscard]] map_node* capture_carried(map_node* root) noexcept;

/// Installs the carried values that `root` holds (the empty value of those
/// it lacks) into the calling thread's variables, and returns a map of the
/// values they replaced, for restore_carried.
[[nodiscard]] map_node* install_carried(const map_node* root) noexcept;

/// Puts back the values that install_carried saved, and releases `saved`.
void restore_carried(map_node* saved) noexcept;

}  // namespace ctxpool::detail
