// Declaring a plain `thread_local` a deliberate per-thread cache, so that
// residue detection never reports it.
//
//     thread_local std::mt19937 rng{std::random_device{}()};
//     CTXPOOL_THREAD_CACHE(rng);   // at namespace scope, after the declaration
//
// In residue mode ctxpool checks the program's own plain `thread_local`s (see
// <ctxpool/diagnostics.hpp>): one a task leaves changed and a later task reads
// first is a stale read. A per-thread RNG, a scratch buffer or a connection
// is meant to outlive the task; declare it and it is never diffed, watched or
// reported. For variables in code you do not own, use a `thread-cache:glob`
// line in the suppressions file instead (see <ctxpool/diagnostics/options.hpp>).
//
// The declaration records the name as written: `CTXPOOL_THREAD_CACHE(rng)`
// inside `namespace app` matches the discovered `app::rng` (a declared name
// matches a discovered one equal to it or ending in `::` + it), and
// `CTXPOOL_THREAD_CACHE(app::rng)` works from anywhere. It must run during
// static initialisation (namespace scope): ctxpool reads the declarations when
// the first task begins. A function-local `static thread_local` cannot be
// named from namespace scope; declare it in the suppressions file
// (`thread-cache:make_id()::counter`).
//
// @par Thread safety
// Declarations may run concurrently with each other and with tasks.
//
// @par Lifetime
// A declaration lasts for the life of the process.
#pragma once

#include <string_view>

namespace ctxpool::diagnostics {

/// Declares the plain `thread_local` called `name` a per-thread cache.
/// Prefer `CTXPOOL_THREAD_CACHE`, which checks that the name exists.
void declare_thread_cache(std::string_view name);

/// Whether the declared name `declared` designates the discovered variable
/// `discovered` (equal, or `discovered` ends in `::` followed by `declared`).
[[nodiscard]] bool thread_cache_name_matches(std::string_view declared,
                                             std::string_view discovered) noexcept;

/// What `CTXPOOL_THREAD_CACHE` expands to: a declaration at static initialisation.
class thread_cache_declaration {
 public:
  explicit thread_cache_declaration(std::string_view name) { declare_thread_cache(name); }
};

}  // namespace ctxpool::diagnostics

#define CTXPOOL_DETAIL_CONCAT_INNER(a, b) a##b
#define CTXPOOL_DETAIL_CONCAT(a, b) CTXPOOL_DETAIL_CONCAT_INNER(a, b)

/// Declares the plain `thread_local` `var` a deliberate per-thread cache that
/// residue detection never reports; see the file comment. `var` must name a
/// variable in scope (checked at compile time).
#define CTXPOOL_THREAD_CACHE(var)                                                \
  [[maybe_unused]] static const ::ctxpool::diagnostics::thread_cache_declaration \
  CTXPOOL_DETAIL_CONCAT(ctxpool_thread_cache_, __LINE__) {                       \
    (static_cast<void>(sizeof(var)), #var)                                       \
  }
