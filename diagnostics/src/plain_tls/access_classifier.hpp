// Is a watched variable's first access in a task a read or a write?
//
// The rule (the hardware only says "accessed"; x86 traps after the
// instruction):
//  1. Find the accessing instruction: the one ending at the trap PC, found by
//     disassembling (capstone) from the start of the enclosing function's
//     symbol; the single-step tracer knows it directly.
//  2. Its memory operand only written (`mov $0, %fs:x`, a store): a write.
//     Read, or read and written (`addl $1, %fs:x` is `++depth`, a compare, a
//     load): a read, unless rule 3 says the read is part of an assignment.
//  3. An assignment reads the old state to replace it (a string's assignment
//     reads its pointer and capacity first). A read counts as a write when
//     the variable ended the task changed *and*
//     - with debug information: one of the inline frames at the instruction
//       (libdw scopes, innermost out to the first function that is not the
//       standard library's) is an assignment-like function: `operator=`,
//       `assign`, `clear`, `reset`, `swap`, `_M_assign`, `_M_replace`,
//       `_M_construct`, `_M_set_length`, `_M_erase`, `resize`, `emplace`;
//     - without debug information: always (the enclosing function is all
//       that is known, and an inlined assignment looks like any read).
//     The "ended changed" half keeps a copy *out of* the variable (whose
//     copy constructor or `operator=` reads it) a read.
// Consequences, stated in the README: a read of a stale value followed by a
// change in the same task, inside an assignment-like function or in code
// without debug information, is not reported (a missed finding, never a false
// one); an access only beyond a large variable's first 16 bytes is not seen by
// hardware watchpoints.
//
// The read site: the innermost frame that is not the standard library's
// (the user's function), with the source line in it (libdw call lines across
// inlined library code), the library function inlined there, and the PC.
//
// @par Thread safety
// `classify` may be called from any thread; symbolisation is cached per PC.
#pragma once

#include <cstdint>
#include <string_view>

#include "monitor.hpp"
#include "watchpoints.hpp"

namespace ctxpool::diagnostics::detail::plain_tls {

enum class access_kind { read, write };

struct classified_access {
  access_kind kind = access_kind::read;
  access_site site;
};

/// Classifies the first access `hit`; `changed_by_end` says whether the
/// variable's bytes differ at task end from task begin.
classified_access classify_access(const watch_hit& hit, bool changed_by_end);

/// True for the unqualified names in rule 3 ("operator=", "_M_replace" ...),
/// given a demangled, possibly qualified function name with parameters.
[[nodiscard]] bool is_assignment_like(std::string_view function) noexcept;

}  // namespace ctxpool::diagnostics::detail::plain_tls
