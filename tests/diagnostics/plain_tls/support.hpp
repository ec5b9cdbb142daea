// Helpers for the plain thread_local platform tests: run a "task" between
// task_begin and task_end on the calling thread, find a variable by name,
// start the monitor in a given watch mode.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <doctest/doctest.h>

#include "plain_tls/monitor.hpp"

/// REQUIRE for code on a std::thread of the test (a REQUIRE there would
/// throw out of the thread and terminate the program).
#define CHECK_OR_RETURN(cond) \
  do {                        \
    CHECK(cond);              \
    if (!(cond)) return;      \
  } while (false)

namespace plain_tls_test {

namespace pt = ctxpool::diagnostics::detail::plain_tls;

#if defined(__SANITIZE_THREAD__)
inline constexpr bool under_tsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool under_tsan = true;
#else
inline constexpr bool under_tsan = false;
#endif
#else
inline constexpr bool under_tsan = false;
#endif

/// The one cache declaration of these test programs (start() keeps the first).
inline bool is_cache(std::string_view name) { return name == "per_thread_rng"; }

inline pt::status start_in(pt::watch_mode mode) {
  pt::force_watch_mode(mode);
  return pt::start(is_cache);
}

/// Index of the discovered variable named `name`, if any.
inline std::optional<std::uint32_t> find(std::string_view name) {
  for (std::uint32_t i = 0; i < pt::variable_count(); ++i) {
    if (pt::describe(i).name == name) return i;
  }
  return std::nullopt;
}

/// Runs `f` as one task on the calling thread.
template <class F>
pt::task_outcome run_task(F&& f) {
  pt::task_begin();
  f();
  return pt::task_end();
}

inline bool left_dirty(const pt::task_outcome& out, std::uint32_t var) {
  for (std::uint32_t v : out.left_dirty) {
    if (v == var) return true;
  }
  return false;
}

/// The read site of `var` if the task's first access to it was a read.
inline std::optional<ctxpool::diagnostics::code_location> read_first(const pt::task_outcome& out,
                                                                     std::uint32_t var) {
  for (const auto& [v, site] : out.read_first) {
    if (v == var) return site;
  }
  return std::nullopt;
}

inline bool ends_with(std::string_view s, std::string_view tail) { return s.ends_with(tail); }

}  // namespace plain_tls_test
