// Platforms without ELF TLS introspection (or builds without elfutils and
// capstone): plain `thread_local` detection is off, and start() says so.
#include <stdexcept>
#include <string>

#include "monitor.hpp"

namespace ctxpool::diagnostics::detail::plain_tls {

void force_watch_mode(watch_mode) noexcept {}

status start(std::function<bool(std::string_view)>) {
  status st;
  st.notice =
      "plain thread_local detection is off: it needs Linux with elfutils (libdw, libelf) and "
      "capstone at build time; thread_local_var and watch_thread_local still work";
  return st;
}

const variable& describe(std::uint32_t index) {
  throw std::out_of_range(
      "plain_tls::describe: no variables are discovered on this platform (index " +
      std::to_string(index) + ")");
}

std::uint32_t variable_count() noexcept { return 0; }

void task_begin() noexcept {}

task_outcome task_end() { return {}; }

watch_stats stats() noexcept { return {}; }

std::vector<std::string> watched_names(std::size_t) { return {}; }

code_location locate(std::uintptr_t) { return {}; }

}  // namespace ctxpool::diagnostics::detail::plain_tls
