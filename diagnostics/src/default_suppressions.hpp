// Known per-thread caches of common libraries: plain `thread_local`s that
// outlive tasks by design, shipped as `thread-cache:` declarations that apply
// unless `CTXPOOL_DIAGNOSTICS=residue:default_suppressions=0` (as sanitizers
// ship default suppressions). Each entry says how it was found; the
// demangled names are matched as globs, inline namespaces (abseil's
// `debian3` in Debian's build) by `*`.
//
// Found by listing the TLS symbols of every shared library of Debian 12's
// libabsl-dev, libprotobuf-dev, libspdlog-dev, libfmt-dev and Boost
// (`readelf -sW lib.so | awk '$4 == "TLS"'`): the three below are all
// abseil's and protobuf's; tests/diagnostics/plain_libraries_child.cpp uses
// protobuf arenas and abseil containers and must stay clean.
//
// Looked at and needing no entry: spdlog 1.10 (libspdlog-dev) keeps only
// `details::os::thread_id()::tid`, a `const` function-local `static
// thread_local` set at its first use (first-use initialisation, never
// residue), and its shared library exports no TLS symbol; fmt 9 has no
// thread_local.
#pragma once

#include <string_view>

namespace ctxpool::diagnostics::detail {

inline constexpr std::string_view default_thread_caches[] = {
    // abseil (libabsl-dev 20220623, inline namespace `debian3`): the seed of
    // hash tables built without NDEBUG, bumped by every table constructed,
    // so a task that builds a flat_hash_map leaves it changed and the next
    // one reads it (absl/container/internal/raw_hash_set.cc).
    "absl::*container_internal::RandomSeed()::counter",
    // abseil: the countdown to the next sampled absl::Cord, decremented by
    // every Cord made (absl/strings/internal/cordz_functions.cc).
    "absl::*cord_internal::cordz_next_sample",
    // protobuf (libprotobuf-dev 3.21): the arena's per-thread cache of the
    // last arena and block used (google/protobuf/arena.cc).
    "google::protobuf::internal::ThreadSafeArena::thread_cache_",
};

}  // namespace ctxpool::diagnostics::detail
