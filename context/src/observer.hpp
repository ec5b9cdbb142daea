// Private access to the installed residue observer for the context sources.
#pragma once

#include <atomic>
#include <string>
#include <typeinfo>

#include <ctxpool/detail/demangle.hpp>
#include <ctxpool/hooks.hpp>

namespace ctxpool::detail {

extern constinit std::atomic<residue_observer*> installed_observer;

/// The observer, if one is installed; a relaxed load is enough because it is
/// installed before the threads that use it are started.
inline residue_observer* observer() noexcept {
  return installed_observer.load(std::memory_order_acquire);
}

}  // namespace ctxpool::detail
