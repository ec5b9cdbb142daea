// The value a context variable has for the calling thread, without throwing.
#pragma once

#include <ctxpool/context.hpp>

namespace ctxpool::log::detail {

/// The value of `var` in the calling thread's current context, else its
/// default, else nullptr. The pointer is valid until the thread's context
/// changes (the next `set`, `reset` or context switch on this thread).
template <class T>
[[nodiscard]] const T* current_value(const context_var<T>& var) noexcept {
  if (const void* value = ctxpool::detail::lookup_set_value(var.id())) {
    return static_cast<const T*>(value);
  }
  const auto& fallback = var.default_value();
  return fallback ? &*fallback : nullptr;
}

}  // namespace ctxpool::log::detail
