// Leak accounting: the context values and contexts made while detection ran
// with `leaks` on, and the check that reports those still alive that nothing
// but a token, a snapshot or a leaked map holds (check_leaks in findings.hpp).
//
// @par Thread safety
// The hooks from any thread; they lock internally.
#pragma once

#include <string_view>

namespace ctxpool::diagnostics::detail {

/// Turns the accounting on or off (off forgets everything tracked).
void set_leak_tracking(bool on) noexcept;
[[nodiscard]] bool leak_tracking() noexcept;

/// The observer's value and context hooks.
void track_value(const void* value, std::string_view var_name, std::string_view type_name) noexcept;
void untrack_value(const void* value) noexcept;
void track_context(const void* ctx) noexcept;
void untrack_context(const void* ctx) noexcept;

}  // namespace ctxpool::diagnostics::detail
