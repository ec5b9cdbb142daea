// The phrases every report shares (finding_text.hpp).
#include "finding_text.hpp"

#include <fmt/format.h>

#include "finding_kinds.hpp"

namespace ctxpool::diagnostics::detail {

std::string describe_site(const code_location& site) {
  const std::string_view function = site.function_name();
  if (site.line() != 0) {
    if (function.empty()) return fmt::format("{}:{}", site.file_name(), site.line());
    return fmt::format("{}:{} in {}", site.file_name(), site.line(), function);
  }
  if (!function.empty()) {
    return fmt::format("{} (pc {:#x}; no line information)", function, site.pc());
  }
  if (site.pc() != 0) return fmt::format("pc {:#x} (no symbol information)", site.pc());
  return "an unknown site";
}

std::string describe_task(const task_ref& task) {
  if (task.id == 0) return "code outside any task";
  if (task.name.empty()) return fmt::format("task #{}", task.id);
  return fmt::format("task #{} \"{}\"", task.id, task.name);
}

std::string describe_thread(const finding& f) {
  if (f.worker < 0) return fmt::format("T{}", f.thread);
  return fmt::format("T{} (worker {})", f.thread, f.worker);
}

bool is_plain(const finding& f) noexcept { return !f.module.empty(); }

std::string describe_variable(const finding& f) {
  if (is_plain(f)) {
    return fmt::format("'{}' (plain thread_local, {} bytes, in {})", f.variable, f.size, f.module);
  }
  return fmt::format("'{}' ({})", f.variable, f.type);
}

std::string suppression_hint(const finding& f) {
  if (is_plain(f)) {
    // A plain thread_local that is meant to outlive tasks is a cache.
    return fmt::format("thread-cache:{}  or  {}:{}", f.variable, to_string(f.kind), f.variable);
  }
  if (info_of(f.kind).hint_by_variable && !f.variable.empty()) {
    return fmt::format("{}:{}", to_string(f.kind), f.variable);
  }
  std::string_view file = site_of(f).file_name();
  if (const auto slash = file.rfind('/'); slash != std::string_view::npos) {
    file.remove_prefix(slash + 1);
  }
  if (file.empty()) return fmt::format("{}:*", to_string(f.kind));
  return fmt::format("{}:{}", to_string(f.kind), file);
}

std::string json_string(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace ctxpool::diagnostics::detail

namespace ctxpool::diagnostics {

const code_location& site_of(const finding& f) noexcept {
  // A site without a line is not one an editor can show: the submit site is.
  if (f.site.line() != 0) return f.site;
  if (f.kind == finding_kind::residue && f.write_site.line() != 0) return f.write_site;
  return f.task.submit_site;
}

}  // namespace ctxpool::diagnostics
