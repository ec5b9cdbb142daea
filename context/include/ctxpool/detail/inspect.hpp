// Read-only views of the context layer's internals, for the diagnostics
// layer: the lineage the calling thread runs in, and the values a context
// holds. Diagnostics reads context internals through these functions only.
//
// @par Thread safety
// `current_lineage` reads the calling thread's state. `for_each_held_value`
// walks a live context's map: call it while no thread changes that context.
#pragma once

#include <bit>
#include <cstdint>

#include <ctxpool/detail/map.hpp>
#include <ctxpool/detail/state.hpp>

namespace ctxpool::detail {

/// The lineage of the context the calling thread runs in (the steps of one
/// coroutine, and work posted from one context, share it); 0 before the
/// thread first needed a context.
[[nodiscard]] inline std::uint64_t current_lineage() noexcept {
  const context_box* box = this_thread_state().current;
  return box == nullptr ? 0 : box->lineage;
}

/// Calls `visit(value)` for every value held by the map rooted at `node`;
/// each `value` is the address a value's creation hook announced.
template <class Visit>
void for_each_value_in(const map_node* node, Visit& visit) {
  if (node == nullptr) return;
  const int leaves = std::popcount(node->leaves);
  const int children = std::popcount(node->children);
  for (int i = 0; i < leaves; ++i) visit(static_cast<const void*>(node->entries()[i]));
  for (int i = 0; i < children; ++i) {
    for_each_value_in(static_cast<const map_node*>(node->entries()[leaves + i]), visit);
  }
}

/// Calls `visit(value)` for every value the context `box` holds; `box` is
/// the address a context's creation hook announced.
template <class Visit>
void for_each_held_value(const void* box, Visit visit) {
  for_each_value_in(static_cast<const context_box*>(box)->root, visit);
}

}  // namespace ctxpool::detail
