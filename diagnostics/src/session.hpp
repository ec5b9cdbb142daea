// The session: detection switched on (from CTXPOOL_DIAGNOSTICS before main,
// or by enable()) and off, the end of the run (SUMMARY lines, the report
// file, the exit status), and halting at the first finding when asked.
//
// @par Thread safety
// Any thread. `halt_run` does not return.
#pragma once

namespace ctxpool::diagnostics::detail {

/// Ends the process now with the configured exit code, after the SUMMARY
/// lines and the report (halt_on_error). Called by whoever recorded the
/// finding, with no lock held.
[[noreturn]] void halt_run() noexcept;

}  // namespace ctxpool::diagnostics::detail
