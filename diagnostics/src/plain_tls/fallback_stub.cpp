// TEMPORARY (branch `detect` only; drop at merge): a stand-in for the plain
// thread_local monitor until its real implementation (branch `tlsplat`) is on
// main. It discovers nothing, so plain thread_locals are not checked.
#include "monitor.hpp"

namespace ctxpool::diagnostics::detail::plain_tls {

status start(std::function<bool(std::string_view name)> /*is_cache*/) { return {}; }

const variable& describe(std::uint32_t /*index*/) {
  static const variable none{};
  return none;
}

void task_begin() noexcept {}

task_outcome task_end() { return {}; }

}  // namespace ctxpool::diagnostics::detail::plain_tls
