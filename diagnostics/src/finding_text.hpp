// The phrases every report shares: how a task, a site, a thread and a
// variable are named in text, JSON and SARIF.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <ctxpool/diagnostics/findings.hpp>

namespace ctxpool::diagnostics::detail {

/// "file:line in function", "function (pc 0x..; no line information)", or "an unknown site".
[[nodiscard]] std::string describe_site(const code_location& site);

/// "task #3 \"name\"", "task #3", or "code outside any task".
[[nodiscard]] std::string describe_task(const task_ref& task);

/// "T2 (worker 1)" or "T2".
[[nodiscard]] std::string describe_thread(const finding& f);

/// Whether `f` is about a plain thread_local (it has a module).
[[nodiscard]] bool is_plain(const finding& f) noexcept;

/// "'auth_token' (std::string)" or "'auth_token' (plain thread_local, 32 bytes, in /bin/app)".
[[nodiscard]] std::string describe_variable(const finding& f);

/// The suppressions line that would silence `f`, shown with every finding.
[[nodiscard]] std::string suppression_hint(const finding& f);

/// A JSON string literal for `s`, quotes included.
[[nodiscard]] std::string json_string(std::string_view s);

}  // namespace ctxpool::diagnostics::detail
