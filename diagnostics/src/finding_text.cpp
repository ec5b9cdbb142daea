// The phrases every report shares (finding_text.hpp).
#include "finding_text.hpp"

#include <fmt/format.h>

namespace ctxpool::diagnostics::detail {

bool known(const std::source_location& site) noexcept { return site.line() != 0; }

site_view view_of(const std::source_location& site) noexcept {
  if (!known(site)) return {};
  return {site.file_name(), site.line(), site.function_name(), 0};
}

std::string describe_site(const site_view& site) {
  if (site.line != 0) {
    if (site.function.empty()) return fmt::format("{}:{}", site.file, site.line);
    return fmt::format("{}:{} in {}", site.file, site.line, site.function);
  }
  if (!site.function.empty()) {
    return fmt::format("{} (pc {:#x}; no line information)", site.function, site.pc);
  }
  if (site.pc != 0) return fmt::format("pc {:#x} (no symbol information)", site.pc);
  return "an unknown site";
}

std::string describe_site(const std::source_location& site) { return describe_site(view_of(site)); }

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

site_view read_site(const finding& f) noexcept {
  if (known(f.site)) return view_of(f.site);
  const code_location& at = f.read_location;
  return {at.file, at.line, at.function, at.pc};
}

site_view primary_site(const finding& f) noexcept {
  if (const site_view read = read_site(f); read.line != 0) return read;
  if (f.kind == finding_kind::residue && known(f.write_site)) return view_of(f.write_site);
  return view_of(f.task.submit_site);
}

std::string suppression_hint(const finding& f) {
  if (is_plain(f)) {
    // A plain thread_local that is meant to outlive tasks is a cache.
    return fmt::format("thread-cache:{}  or  {}:{}", f.variable, to_string(f.kind), f.variable);
  }
  if (f.kind != finding_kind::leaked_context && !f.variable.empty()) {
    return fmt::format("{}:{}", to_string(f.kind), f.variable);
  }
  std::string_view file = primary_site(f).file;
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
