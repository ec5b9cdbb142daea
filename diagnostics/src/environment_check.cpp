// The symbol that keeps the CTXPOOL_DIAGNOSTICS check in every program that
// links ctxpool::ctxpool (the umbrella target asks the linker to keep it; see
// the top-level CMakeLists.txt).
//
// A static link only takes the archive members a program references. A
// program that uses only the context layer references nothing here, so the
// object that reads the environment would be left out and a misspelt mode
// (`residu`) accepted in silence: exactly the CI run that believes it checks
// and does not. Keeping this object keeps its initializer, which reads the
// environment before main (and ends the process on a bad value).
#include <ctxpool/diagnostics.hpp>

/// Whether detection is on; exists to be named on the link line.
extern "C" bool ctxpool_diagnostics_environment_check() noexcept {
  return ctxpool::diagnostics::enabled();
}

namespace {
// enabled() reads CTXPOOL_DIAGNOSTICS on first use; calling it here makes
// that happen at start-up whichever file of the library holds the reading.
[[maybe_unused]] const bool checked_at_startup = ctxpool_diagnostics_environment_check();
}  // namespace
