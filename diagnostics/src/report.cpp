// format_finding, the SUMMARY lines, and the text, JSON-lines and SARIF 2.1.0 report files.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include <cctype>
#include <climits>
#include <cstdlib>
#include <optional>
#include <cstdio>
#include <string>

#include <ctxpool/version.hpp>
#include <fmt/format.h>

#include "report.hpp"
#include "finding_kinds.hpp"
#include "finding_text.hpp"

namespace ctxpool::diagnostics {
namespace detail {
namespace {

constexpr int json_schema_version = 1;
constexpr std::string_view tool_name = "ctxpool-diagnostics";
constexpr std::string_view tool_version = CTXPOOL_VERSION_STRING;

std::string json_site(const code_location& site) {
  if (!site.known()) return "null";
  std::string text =
      fmt::format(R"({{"file":{},"line":{},"function":{})",
                  site.line() != 0 ? json_string(site.file_name()) : std::string("null"),
                  site.line(), json_string(site.function_name()));
  if (site.pc() != 0) text += fmt::format(R"(,"pc":"{:#x}")", site.pc());
  return text + "}";
}

std::string json_task(const task_ref& task) {
  if (task.id == 0) return "null";
  return fmt::format(R"({{"id":{},"name":{},"submit_site":{}}})", task.id, json_string(task.name),
                     json_site(task.submit_site));
}

/// `path` as the path part of a URI: bytes other than unreserved ones and
/// '/' percent-encoded (RFC 3986).
std::string uri_path(std::string_view path) {
  std::string out;
  for (const char c : path) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) != 0 || c == '/' || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += fmt::format("%{:02X}", byte);
    }
  }
  return out;
}

/// An absolute directory path ending in '/'; relative ones are taken from the
/// working directory.
std::string as_directory(std::string path) {
  if (!path.empty() && path.front() != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof cwd) != nullptr) path = std::string(cwd) + "/" + path;
  }
  if (!path.empty() && path.back() != '/') path += '/';
  return path;
}

/// The nearest directory above `file` holding a `.git` (a checkout or a
/// worktree), or empty.
std::string git_root_of(std::string_view file) {
  std::string dir(file);
  while (true) {
    const std::size_t slash = dir.rfind('/');
    if (slash == std::string::npos || slash == 0) return {};
    dir.resize(slash);
    if (::access((dir + "/.git").c_str(), F_OK) == 0) return dir + "/";
  }
}

/// What `%SRCROOT%` stands for in this process's SARIF results (see
/// options.hpp): `srcroot=`, else $GITHUB_WORKSPACE, else the git root of
/// the first absolute file a finding names, else that of the program (a
/// build directory inside the checkout), else that of the working
/// directory; empty when none applies.
std::string sarif_source_root(std::string_view configured, const run_summary& run) {
  if (!configured.empty()) return as_directory(std::string(configured));
  if (const char* workspace = std::getenv("GITHUB_WORKSPACE"); workspace && *workspace) {
    return as_directory(workspace);
  }
  for (const finding& f : run.findings) {
    for (const std::string_view file :
         {std::string_view(site_of(f).file_name()), std::string_view(f.write_site.file_name())}) {
      if (file.starts_with('/')) {
        if (std::string root = git_root_of(file); !root.empty()) return root;
      }
    }
  }
  char buffer[PATH_MAX];
  if (const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof buffer - 1); n > 0) {
    if (std::string root = git_root_of(std::string_view(buffer, static_cast<std::size_t>(n)));
        !root.empty()) {
      return root;
    }
  }
  if (::getcwd(buffer, sizeof buffer) != nullptr) return git_root_of(std::string(buffer) + "/.");
  return {};
}

/// `file` relative to `root` (absolute, ending in '/'), or nullopt. A
/// relative file name (compiled from a build directory, or rewritten by
/// ccache's base_dir) is relative to a directory unknown here: it is matched
/// by its longest tail, after the leading "../" and "./", that names a file
/// under the root.
std::optional<std::string> relative_to_root(std::string_view file, std::string_view root) {
  if (root.empty()) return std::nullopt;
  if (file.starts_with('/')) {
    if (file.starts_with(root)) return std::string(file.substr(root.size()));
    return std::nullopt;
  }
  while (file.starts_with("../") || file.starts_with("./")) file.remove_prefix(file.find('/') + 1);
  while (!file.empty()) {
    if (::access((std::string(root) + std::string(file)).c_str(), F_OK) == 0) {
      return std::string(file);
    }
    const std::size_t slash = file.find('/');
    if (slash == std::string_view::npos) break;
    file.remove_prefix(slash + 1);
  }
  return std::nullopt;
}

/// A SARIF artifact location: relative to `%SRCROOT%` (`root`) for a file
/// under it, so that it does not depend on the working directory; else an
/// absolute file URI.
std::string sarif_artifact(std::string_view file, std::string_view root) {
  if (const auto relative = relative_to_root(file, root)) {
    return fmt::format(R"({{"uri":{},"uriBaseId":"%SRCROOT%"}})", json_string(uri_path(*relative)));
  }
  if (file.starts_with('/'))
    return fmt::format(R"({{"uri":{}}})", json_string("file://" + uri_path(file)));
  return fmt::format(R"({{"uri":{}}})", json_string(uri_path(file)));
}

std::string sarif_location(const code_location& site, std::string_view message,
                           std::string_view root) {
  const std::string artifact = site.line() != 0 ? sarif_artifact(site.file_name(), root)
                                                : std::string(R"({"uri":"unknown"})");
  const std::uint_least32_t line = site.line() != 0 ? site.line() : 1U;
  std::string text = "{";
  if (!message.empty()) text += fmt::format(R"("message":{{"text":{}}},)", json_string(message));
  text += fmt::format(R"("physicalLocation":{{"artifactLocation":{},)", artifact);
  text += fmt::format(R"("region":{{"startLine":{}}}}})", line);
  text += "}";
  return text;
}

std::string json_lines(const run_summary& run) {
  std::string out;
  for (const finding& f : run.findings) {
    const std::string line = fmt::format(
        R"({{"schema":"{}","schema_version":{},"type":"finding","kind":"{}","variable":{},)"
        R"("type_name":{},"module":{},"size":{},"count":{},"left_dirty":{},"thread":{},)"
        R"("worker":{},"same_context":{},)"
        R"("task":{},"site":{},"writer":{},"write_site":{},"message":{}}})"
        "\n",
        tool_name, json_schema_version, to_string(f.kind), json_string(f.variable),
        json_string(f.type), is_plain(f) ? json_string(f.module) : std::string("null"), f.size,
        f.count, f.left_dirty, f.thread, f.worker, f.same_context, json_task(f.task),
        json_site(f.site), json_task(f.writer), json_site(f.write_site),
        json_string(info_of(f.kind).one_line(f)));
    out += line;
  }
  std::string counts;
  for (const kind_info& kind : kind_table()) {
    const kind_total total = total_of(run.findings, kind.kind);
    if (!counts.empty()) counts += ',';
    counts += fmt::format(R"("{}":{{"findings":{},"occurrences":{}}})", kind.name, total.unique,
                          total.occurrences);
  }
  std::string suppressed;
  for (const suppression_count& rule : run.suppressions) {
    if (!suppressed.empty()) suppressed += ',';
    suppressed +=
        fmt::format(R"({{"kind":{},"pattern":{},"suppressed":{}}})", json_string(rule.rule.kind),
                    json_string(rule.rule.pattern), rule.hits);
  }
  out +=
      fmt::format(R"({{"schema":"{}","schema_version":{},"type":"summary","pid":{},)"
                  R"("counts":{{{}}},"suppressions":[{}]}})"
                  "\n",
                  tool_name, json_schema_version, static_cast<int>(::getpid()), counts, suppressed);
  return out;
}

/// The results of `run` as the comma-separated inside of a SARIF results array.
std::string sarif_results(const run_summary& run, std::string_view root) {
  std::string results;
  for (const finding& f : run.findings) {
    if (!results.empty()) results += ',';
    std::string related;
    int related_id = 0;
    auto relate = [&](const code_location& site, const std::string& message) {
      if (site.line() == 0) return;
      if (!related.empty()) related += ',';
      std::string location = sarif_location(site, message, root);
      location.insert(1, fmt::format(R"("id":{},)", related_id++));
      related += location;
    };
    relate(f.write_site, fmt::format("written by {}", describe_task(f.writer)));
    if (f.writer.id != 0) {
      relate(f.writer.submit_site, fmt::format("{} submitted here", describe_task(f.writer)));
    }
    if (f.task.id != 0 && f.site.line() != 0) {
      relate(f.task.submit_site, fmt::format("{} submitted here", describe_task(f.task)));
    }
    const kind_info& rule = info_of(f.kind);
    results += fmt::format(
        R"({{"ruleId":"{}","ruleIndex":{},"level":"{}","message":{{"text":{}}},)"
        R"("locations":[{}],"relatedLocations":[{}],"occurrenceCount":{},)"
        R"("properties":{{"variable":{},"type":{},"module":{},"size":{},"leftDirty":{}}}}})",
        rule.name, static_cast<std::size_t>(f.kind), rule.level, json_string(rule.one_line(f)),
        sarif_location(site_of(f), {}, root), related, f.count, json_string(f.variable),
        json_string(f.type), json_string(f.module), f.size, f.left_dirty);
  }
  return results;
}

// A ctxpool SARIF log is written as sarif_head + results + sarif_tail, with
// one run, so that another process can merge its results into the file.
constexpr std::string_view sarif_results_key = R"("results":[)";
constexpr std::string_view sarif_tail = "]}]}\n";

// Where `%SRCROOT%` is declared in a ctxpool SARIF log.
constexpr std::string_view sarif_root_key = R"("originalUriBaseIds":{"%SRCROOT%":{"uri":)";

std::string sarif_document(std::string_view results, std::string_view root) {
  std::string rule_list;
  for (const kind_info& rule : kind_table()) {
    if (!rule_list.empty()) rule_list += ',';
    rule_list += fmt::format(
        R"({{"id":"{}","name":{},"shortDescription":{{"text":{}}},"fullDescription":{{"text":{}}},)"
        R"("defaultConfiguration":{{"level":"{}"}}}})",
        rule.name, json_string(rule.sarif_name), json_string(rule.sarif_short_text),
        json_string(rule.sarif_full_text), rule.level);
  }
  return fmt::format(
      R"({{"$schema":"https://json.schemastore.org/sarif-2.1.0.json","version":"2.1.0",)"
      R"("runs":[{{"tool":{{"driver":{{"name":"{}","version":"{}",)"
      R"("informationUri":"https://github.com/ctxpool/ctxpool","rules":[{}]}}}},)"
      R"({}{}{}{})",
      tool_name, tool_version, rule_list,
      root.empty()
          ? std::string()
          : fmt::format("{}{}}}}},", sarif_root_key, json_string("file://" + uri_path(root))),
      sarif_results_key, results, sarif_tail);
}

/// The directory `%SRCROOT%` stands for in an existing ctxpool SARIF log, or
/// empty. (Written by sarif_document, so no JSON escapes: uri_path leaves none.)
std::string sarif_existing_root(std::string_view log) {
  const std::size_t key = log.find(sarif_root_key);
  if (key == std::string_view::npos) return {};
  std::string_view rest = log.substr(key + sarif_root_key.size());
  if (!rest.starts_with("\"file://")) return {};
  rest.remove_prefix(8);
  const std::size_t end = rest.find('"');
  if (end == std::string_view::npos) return {};
  // Undo uri_path's escapes.
  std::string root;
  const std::string_view encoded = rest.substr(0, end);
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    if (encoded[i] == '%' && i + 2 < encoded.size()) {
      root += static_cast<char>(std::stoi(std::string(encoded.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      root += encoded[i];
    }
  }
  return root;
}

/// The results inside a ctxpool SARIF log written by sarif_document, or
/// nullopt if `log` is not one.
std::optional<std::string_view> sarif_existing_results(std::string_view log) {
  const std::size_t key = log.find(sarif_results_key);
  if (key == std::string_view::npos || !log.ends_with(sarif_tail)) return std::nullopt;
  const std::size_t begin = key + sarif_results_key.size();
  const std::size_t end = log.size() - sarif_tail.size();
  if (end < begin) return std::nullopt;
  return log.substr(begin, end - begin);
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(written));
  }
  return true;
}

std::string read_all(int fd) {
  std::string content;
  char buffer[8192];
  ::lseek(fd, 0, SEEK_SET);
  while (true) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    content.append(buffer, static_cast<std::size_t>(got));
  }
  return content;
}

}  // namespace

kind_total total_of(const std::vector<finding>& all, finding_kind kind) noexcept {
  kind_total total;
  for (const finding& f : all) {
    if (f.kind != kind) continue;
    ++total.unique;
    total.occurrences += f.count;
  }
  return total;
}

std::string format_summary(const run_summary& run) {
  std::string out;
  for (const kind_info& kind : kind_table()) {
    const kind_total total = total_of(run.findings, kind.kind);
    if (total.unique == 0) continue;
    out += fmt::format("SUMMARY: ctxpool: {}: {} finding(s), {} occurrence(s)\n", kind.name,
                       total.unique, total.occurrences);
  }
  if (!run.plain_note.empty()) out += "ctxpool: " + run.plain_note + "\n";
  for (const suppression_count& rule : run.suppressions) {
    if (rule.rule.kind == thread_cache_kind) {
      if (rule.hits == 0) {
        out += fmt::format(
            "ctxpool: suppression 'thread-cache:{}' matched no plain thread_local: check the "
            "name (demangled, e.g. 'ns::var' or 'func()::var')\n",
            rule.rule.pattern);
      } else {
        out +=
            fmt::format("ctxpool: suppression 'thread-cache:{}' declared {} variable(s) caches\n",
                        rule.rule.pattern, rule.hits);
      }
      continue;
    }
    out += fmt::format("ctxpool: suppression '{}:{}' suppressed {} occurrence(s){}\n",
                       rule.rule.kind, rule.rule.pattern, rule.hits,
                       rule.hits == 0 ? ": it matched nothing, check its spelling" : "");
  }
  return out;
}

bool write_report(const std::string& path, report_format format, std::string_view srcroot,
                  const run_summary& run) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  // Every process of a test run may write the same report: one at a time.
  while (::flock(fd, LOCK_EX) < 0 && errno == EINTR) {
  }
  bool ok = true;
  switch (format) {
    case report_format::text: {
      std::string text;
      for (const finding& f : run.findings) text += format_finding(f);
      text += format_summary(run);
      ok = ::lseek(fd, 0, SEEK_END) >= 0 && write_all(fd, text);
      break;
    }
    case report_format::json:
      ok = ::lseek(fd, 0, SEEK_END) >= 0 && write_all(fd, json_lines(run));
      break;
    case report_format::sarif: {
      const std::string existing = read_all(fd);
      const auto earlier = sarif_existing_results(existing);
      // Results merged from other processes keep the root they were written
      // against; this process's are written against it too.
      std::string root = earlier ? sarif_existing_root(existing) : std::string();
      if (root.empty()) root = sarif_source_root(srcroot, run);
      std::string results = sarif_results(run, root);
      if (earlier && !earlier->empty()) {
        results = std::string(*earlier) + (results.empty() ? "" : ",") + results;
      }
      // A file that is not a ctxpool log (or is empty) is replaced.
      const std::string document = sarif_document(results, root);
      ok = ::ftruncate(fd, 0) == 0 && ::lseek(fd, 0, SEEK_SET) == 0 && write_all(fd, document);
      break;
    }
  }
  ::flock(fd, LOCK_UN);
  return ::close(fd) == 0 && ok;
}

}  // namespace detail

std::string format_finding(const finding& f) {
  std::string out = fmt::format("=={}==ERROR: ctxpool: ", static_cast<int>(::getpid()));
  out += detail::info_of(f.kind).details(f);
  out +=
      fmt::format("  (suppressions file line to silence this: {})\n", detail::suppression_hint(f));
  return out;
}

}  // namespace ctxpool::diagnostics
