// The detector's observer, which the session installs as the context
// layer's residue observer (and pools get through pool_observer()).
#pragma once

#include <ctxpool/hooks.hpp>

namespace ctxpool::diagnostics::detail {

/// The one observer (never destroyed: worker threads may outlive statics).
[[nodiscard]] residue_observer& the_residue_observer() noexcept;

}  // namespace ctxpool::diagnostics::detail
