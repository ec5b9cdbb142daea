// Is a watched variable's first access in a task a read or a write?
//
// The rule (the hardware only says "accessed"; x86 traps after the
// instruction; the instrumented build's callbacks say load or store):
//  0. Instrumented build: bytes already changed at the first instrumented
//     access mean code that is not instrumented wrote first: a write. A load
//     inside an assignment-like frame (rule 3's list) is a write even when
//     the bytes end unchanged (an equal value assigned again through
//     libstdc++'s out-of-line members, which are not instrumented, leaves no
//     other trace); a copy *out of* a string goes through those members and
//     is not seen at all. Otherwise a store is a write, a load a read.
//  1. Find the accessing instruction: the one ending at the trap PC, found by
//     disassembling (capstone) from the start of the enclosing function's
//     symbol; the single-step tracer knows it directly.
//  2. Its memory operand only written (`mov $0, %fs:x`, a store): a write.
//     Read, or read and written (`addl $1, %fs:x` is `++depth`, a compare, a
//     load): a read, unless rule 3 says the read is part of an assignment.
//  3. An assignment reads the old state to replace it (a string's assignment
//     reads its pointer and capacity first). Walk the frames from the access
//     outwards -- the inline frames at the PC (libdw scopes), then those of
//     each caller (return addresses taken at the trap) -- up to the first
//     frame that is not the standard library's, ctxpool's or a runtime's:
//     the user's frame. A read counts as a write when the variable ended the
//     task changed, or (single step) a store into it followed the read
//     within a few thousand instructions (an equal value assigned again), *and*
//     - a frame on that walk is assignment-like: `operator=`, `assign`,
//       `clear`, `reset`, `swap`, `_M_assign`, `_M_replace`, `_M_construct`,
//       `_M_set_length`, `_M_erase`, `resize`, `emplace` (with debug
//       information these are the inlined functions; without it, out-of-line
//       ones such as libstdc++.so's `_M_assign`, named by the symbol table);
//     - or the user's frame has no debug information (an inlined assignment
//       then looks like any other read).
//     The "ended changed" half keeps a copy *out of* the variable (whose copy
//     constructor or `operator=` reads it) a read.
// Consequences, stated in the README: a read of a stale value followed by a
// change in the same task, inside an assignment-like function or in code
// without debug information, is not reported (a missed finding, never a false
// one); an access only beyond a large variable's first 16 bytes is not seen by
// hardware watchpoints.
//
// The read site is the user's frame: its function, the source line in it (a
// libdw call line where library code is inlined there, the caller's line
// where the access is in an out-of-line library function) and the PC of the
// accessing instruction.
//
// @par Thread safety
// `classify_access` may be called from any thread; symbolisation is cached per PC.
#pragma once

#include <cstdint>
#include <string_view>

#include "monitor.hpp"
#include "watchpoints.hpp"

namespace ctxpool::diagnostics::detail::plain_tls {

enum class access_kind { read, write };

struct classified_access {
  access_kind kind = access_kind::read;
  /// The user's frame at the access (see the read site above); reads only, a
  /// write needs none (and building one per task would cost allocations).
  code_location site;
};

/// Classifies the first access `hit`; `changed_by_end` says whether the
/// variable's bytes differ at task end from task begin.
classified_access classify_access(const watch_hit& hit, bool changed_by_end);

/// True for the unqualified names in rule 3 ("operator=", "_M_replace" ...),
/// given a demangled, possibly qualified function name with parameters.
[[nodiscard]] bool is_assignment_like(std::string_view function) noexcept;

}  // namespace ctxpool::diagnostics::detail::plain_tls
