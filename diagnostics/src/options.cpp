// Parsing of CTXPOOL_DIAGNOSTICS values and suppressions files.
#include <ctxpool/diagnostics/options.hpp>

#include <charconv>
#include <string>

#include <fmt/format.h>

#include "finding_kinds.hpp"

namespace ctxpool::diagnostics {
namespace {

constexpr std::string_view known_options =
    "exitcode, halt_on_error, report, format, srcroot, suppressions, leaks, thread_locals, "
    "default_suppressions";

[[nodiscard]] std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

[[nodiscard]] int parse_int(std::string_view key, std::string_view value, int lo, int hi) {
  int result = 0;
  const auto* end = value.data() + value.size();
  const auto [ptr, ec] = std::from_chars(value.data(), end, result);
  if (value.empty() || ec != std::errc{} || ptr != end || result < lo || result > hi) {
    throw config_error(fmt::format(
        "CTXPOOL_DIAGNOSTICS: option '{}' has malformed value '{}': expected an integer from {} to {}",
        key, value, lo, hi));
  }
  return result;
}

[[nodiscard]] bool parse_bool(std::string_view key, std::string_view value) {
  if (value == "0") return false;
  if (value == "1") return true;
  throw config_error(fmt::format(
      "CTXPOOL_DIAGNOSTICS: option '{}' has malformed value '{}': expected 0 or 1", key, value));
}

[[nodiscard]] bool ends_with(std::string_view s, std::string_view suffix) noexcept {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::string_view to_string(report_format format) noexcept {
  switch (format) {
    case report_format::text: return "text";
    case report_format::json: return "json";
    case report_format::sarif: return "sarif";
  }
  return "?";
}

options parse_options(std::string_view spec) {
  options result;
  const std::size_t colon = spec.find(':');
  const std::string_view mode_name = spec.substr(0, colon);
  if (mode_name.empty() || mode_name == "off") {
    result.mode = mode::off;
  } else if (mode_name == "residue") {
    result.mode = mode::residue;
  } else {
    throw config_error(fmt::format(
        "CTXPOOL_DIAGNOSTICS: unknown mode '{}': expected 'off' or 'residue[:option=value...]'",
        mode_name));
  }
  if (colon == std::string_view::npos) return result;
  if (result.mode == mode::off) {
    throw config_error(fmt::format(
        "CTXPOOL_DIAGNOSTICS: options '{}' given with mode 'off': use 'residue:...' to enable "
        "detection, or drop the options",
        spec.substr(colon + 1)));
  }

  bool format_given = false;
  std::string_view rest = spec.substr(colon + 1);
  while (true) {
    const std::size_t next = rest.find(':');
    const std::string_view item = rest.substr(0, next);
    const std::size_t eq = item.find('=');
    if (item.empty()) {
      throw config_error("CTXPOOL_DIAGNOSTICS: empty option (two ':' in a row, or a trailing ':')");
    }
    if (eq == std::string_view::npos) {
      throw config_error(fmt::format(
          "CTXPOOL_DIAGNOSTICS: option '{}' has no value: write it as '{}=value' (options: {})",
          item, item, known_options));
    }
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    if (key == "exitcode") {
      result.exitcode = parse_int(key, value, 0, 255);
    } else if (key == "halt_on_error") {
      result.halt_on_error = parse_bool(key, value);
    } else if (key == "leaks") {
      result.leaks = parse_bool(key, value);
    } else if (key == "thread_locals") {
      result.thread_locals = parse_bool(key, value);
    } else if (key == "default_suppressions") {
      result.default_suppressions = parse_bool(key, value);
    } else if (key == "report") {
      if (value.empty()) throw config_error("CTXPOOL_DIAGNOSTICS: option 'report' needs a path");
      result.report_path = std::string(value);
    } else if (key == "srcroot") {
      if (value.empty())
        throw config_error("CTXPOOL_DIAGNOSTICS: option 'srcroot' needs a directory");
      result.srcroot = std::string(value);
    } else if (key == "suppressions") {
      if (value.empty()) {
        throw config_error("CTXPOOL_DIAGNOSTICS: option 'suppressions' needs a file name");
      }
      result.suppressions_path = std::string(value);
    } else if (key == "format") {
      if (value == "text") {
        result.format = report_format::text;
      } else if (value == "json") {
        result.format = report_format::json;
      } else if (value == "sarif") {
        result.format = report_format::sarif;
      } else {
        throw config_error(fmt::format(
            "CTXPOOL_DIAGNOSTICS: option 'format' has malformed value '{}': expected text, json "
            "or sarif",
            value));
      }
      format_given = true;
    } else {
      throw config_error(fmt::format("CTXPOOL_DIAGNOSTICS: unknown option '{}' (options: {})", key,
                                     known_options));
    }
    if (next == std::string_view::npos) break;
    rest = rest.substr(next + 1);
  }

  if (format_given && result.report_path.empty()) {
    throw config_error(fmt::format(
        "CTXPOOL_DIAGNOSTICS: option 'format={}' needs 'report=PATH' (findings always go to "
        "stderr as text)",
        to_string(result.format)));
  }
  if (!format_given) {
    result.format =
        ends_with(result.report_path, ".sarif") ? report_format::sarif : report_format::json;
  }
  return result;
}

std::vector<suppression> parse_suppressions(std::string_view text, std::string_view source) {
  std::vector<suppression> result;
  std::size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    if (const std::size_t hash = line.find('#'); hash != std::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = trim(line);
    if (line.empty()) continue;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      throw config_error(fmt::format("{}:{}: '{}' is not 'kind:pattern' (e.g. 'stale-read:auth_*')",
                                     source, line_number, line));
    }
    const std::string_view kind = trim(line.substr(0, colon));
    const std::string_view pattern = trim(line.substr(colon + 1));
    if (!detail::is_suppression_kind(kind)) {
      throw config_error(fmt::format("{}:{}: unknown kind '{}': expected {}", source, line_number,
                                     kind, detail::suppression_kinds_list()));
    }
    if (pattern.empty()) {
      throw config_error(
          fmt::format("{}:{}: empty pattern after '{}:'", source, line_number, kind));
    }
    result.push_back({std::string(kind), std::string(pattern)});
  }
  return result;
}

}  // namespace ctxpool::diagnostics
