// The bridge between plain thread_local detection (plain_tls/) and the
// detection model: starts discovery on the first task, turns each task's
// outcome into the model's leaves and reads, and says in the summary how
// plain thread_locals were watched.
//
// @par Thread safety
// `plain_task_begin`/`plain_task_end` on the thread that runs the task, in
// pairs; the rest from any thread.
#pragma once

#include <string>

#include "task_identity.hpp"

namespace ctxpool::diagnostics::detail {

/// Turns plain thread_local checking on or off (the `thread_locals` option).
void set_plain_checking(bool on) noexcept;

/// Begins tracking the outermost task on this thread, if plain thread_locals
/// are checked and discovery works. @returns whether tracking began.
bool plain_task_begin() noexcept;

/// Ends tracking `task`, feeding its outcome to the model. @returns whether
/// the caller must halt.
[[nodiscard]] bool plain_task_end(const frame& task) noexcept;

/// How plain thread_locals were watched: said when findings were made
/// (`found`), or when some went unwatched; empty otherwise.
[[nodiscard]] std::string plain_note(bool found);

}  // namespace ctxpool::diagnostics::detail
