// Internal configuration macros shared by every ctxpool target.
#pragma once

#include <cstdio>
#include <cstdlib>

#if defined(__GNUC__) || defined(__clang__)
#define CTXPOOL_LIKELY(x) __builtin_expect(!!(x), 1)
#define CTXPOOL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CTXPOOL_NOINLINE __attribute__((noinline))
#else
#define CTXPOOL_LIKELY(x) (x)
#define CTXPOOL_UNLIKELY(x) (x)
#define CTXPOOL_NOINLINE
#endif

/// For the accessors of ctxpool's thread-locals that header code (and so a
/// user's coroutine) inlines: `CTXPOOL_TLS_ACCESSOR T& name() noexcept {
/// CTXPOOL_TLS_FENCE(); return variable; }`. Clang (16 at least; LLVM issues
/// 47179 and 63022) may compute a thread_local's address before a co_await
/// and use it after the coroutine resumed on another thread, hoisting it out
/// of a loop around the co_await: get() would read another thread's cache. A
/// call it cannot inline, to a body it cannot prove free of side effects, is
/// made again after every resumption. GCC lowers a coroutine before it
/// optimises it, so no address outlives a suspension there and the accessors
/// are plain inline functions (the same instructions run as with a direct
/// access, though GCC may keep the address in a register).
#if defined(__clang__)
#define CTXPOOL_TLS_ACCESSOR [[gnu::noinline]] inline
#define CTXPOOL_TLS_FENCE() asm volatile("")
#else
#define CTXPOOL_TLS_ACCESSOR inline
#define CTXPOOL_TLS_FENCE() static_cast<void>(0)
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CTXPOOL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CTXPOOL_SANITIZED 1
#endif
#endif
#ifndef CTXPOOL_SANITIZED
#define CTXPOOL_SANITIZED 0
#endif

// AddressSanitizer alone: recycling memory hides a use after free from it.
#if defined(__SANITIZE_ADDRESS__)
#define CTXPOOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CTXPOOL_ASAN 1
#endif
#endif
#ifndef CTXPOOL_ASAN
#define CTXPOOL_ASAN 0
#endif

namespace ctxpool::detail {
[[noreturn]] inline void assert_fail(const char* file, int line, const char* message) noexcept {
  std::fprintf(stderr, "%s:%d: ctxpool internal error: %s\n", file, line, message);
  std::abort();
}
}  // namespace ctxpool::detail

/// Checks an internal invariant; a failure is a bug in ctxpool or a misuse the
/// library cannot report by throwing (from a destructor, say), so it aborts.
#define CTXPOOL_ASSERT(cond, message) \
  (CTXPOOL_LIKELY(cond) ? (void)0 : ::ctxpool::detail::assert_fail(__FILE__, __LINE__, (message)))

/// CTXPOOL_ASSERT for invariants on hot paths: checked in debug builds and
/// in the sanitizer and protocol-interleaving test builds, compiled out of
/// release builds (it would cost every task a compare and a branch).
#if !defined(NDEBUG) || CTXPOOL_SANITIZED || defined(CTXPOOL_INTERLEAVE_PROTOCOL)
#define CTXPOOL_DEBUG_ASSERT(cond, message) CTXPOOL_ASSERT(cond, message)
#else
#define CTXPOOL_DEBUG_ASSERT(cond, message) static_cast<void>(0)
#endif
