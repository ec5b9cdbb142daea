// The process-wide residue observer: where the diagnostics layer installs it.
#include <ctxpool/hooks.hpp>

#include <atomic>

#include "observer.hpp"

namespace ctxpool {
namespace detail {
constinit std::atomic<residue_observer*> installed_observer{nullptr};
}  // namespace detail

void set_residue_observer(residue_observer* observer) noexcept {
  detail::installed_observer.store(observer, std::memory_order_release);
}

residue_observer* get_residue_observer() noexcept {
  return detail::installed_observer.load(std::memory_order_acquire);
}

}  // namespace ctxpool
