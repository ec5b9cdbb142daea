// Configuration of the residue detector: the CTXPOOL_DIAGNOSTICS syntax.
//
// Detection is configured sanitizer-style, by one environment variable read
// once at start-up:
//
//     CTXPOOL_DIAGNOSTICS=residue:exitcode=66:halt_on_error=0:report=out.sarif:format=sarif
//
// The value is a mode (`off` or `residue`) followed by colon-separated
// `key=value` options:
//
// | option          | values              | default | meaning                                             |
// |-----------------|---------------------|---------|-----------------------------------------------------|
// | `exitcode`      | 0..255              | 66      | process exit status at exit when anything was found |
// | `halt_on_error` | 0, 1                | 0       | exit with `exitcode` at the first finding           |
// | `report`        | a path (`%p` = pid) | none    | at exit, also write a machine-readable report there |
// | `format`        | text, json, sarif   | json, or sarif for a `.sarif` path | format of `report` |
// | `srcroot`       | a directory         | see below | what SARIF locations are relative to (`%SRCROOT%`) |
// | `suppressions`  | a file              | none    | `kind:pattern` lines that silence findings          |
// | `leaks`         | 0, 1                | 0       | at exit, report context values and contexts leaked  |
// | `thread_locals` | 0, 1                | 1       | also check the program's plain `thread_local`s      |
// | `default_suppressions` | 0, 1         | 1       | known caches of common libraries (abseil, protobuf) are not findings |
//
// A report file is shared by every process that names it, so that one test
// run (ctest starts a process per test case) yields one report: at exit each
// process takes a lock on the file and appends its JSON lines or text, or
// merges its SARIF results into the file's single run (GitHub code scanning
// rejects several runs of one tool in an upload). The file is not truncated:
// delete it before a run. `%p` in the path gives each process its own file.
//
// SARIF locations name files relative to `%SRCROOT%` (code scanning maps them
// onto the repository), the same whatever directory a test runs from: the
// log's `originalUriBaseIds` says what it stands for, `srcroot=` if given,
// else `$GITHUB_WORKSPACE`, else the git checkout (the nearest directory with
// a `.git`) holding the first file a finding names. Files outside it get
// absolute `file://` URIs.
//
// Bad configuration (an unknown mode or option, a malformed number, a missing
// suppressions file, a report path that cannot be written) is a `config_error`;
// from the environment it is printed and the process exits with status 2 before
// `main`, so that a typo never switches detection off in CI.
//
// A suppressions file has one `kind:pattern` per line; `#` starts a comment.
// `kind` is `stale-read`, `read-across-suspension`, `residue`, `leaked-value`,
// `leaked-context`, `leak` (both leak kinds) or `*`; `pattern` is a glob (`*`,
// `?`, `[...]`) matched against the variable's name and against every source
// file the finding names (full path or file name).
//
// `thread-cache:pattern` is not a finding kind but a declaration: plain
// `thread_local`s whose demangled name (`rng`, `ns::scratch`,
// `make_id()::counter`) matches the glob are deliberate per-thread caches,
// never diffed, watched or reported (the suppressions-file counterpart of
// `CTXPOOL_THREAD_CACHE`, for code the user does not own). A suppression line
// that matched nothing by exit is reported then, so a misspelt name does not
// go unnoticed.
//
// @par Thread safety
// `parse_options` and `parse_suppressions` are pure functions, safe anywhere.
//
// @par Lifetime
// `options` is a plain value.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ctxpool::diagnostics {

/// Bad detector configuration: names the offending part and what is accepted.
class config_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Whether detection runs at all.
enum class mode {
  off,      ///< nothing installed; thread-local residue is wiped silently
  residue,  ///< stale-read, residue and (with `leaks`) leak detection
};

/// The format of the file that `report=` names.
enum class report_format {
  text,   ///< the same blocks that go to stderr, then the SUMMARY lines
  json,   ///< JSON lines, each with "schema_version"; one per finding, then a summary
  sarif,  ///< one SARIF 2.1.0 document, for GitHub code scanning
};

/// One line of a suppressions file.
struct suppression {
  std::string kind;     ///< a finding kind, "leak", "*" or "thread-cache" (see above)
  std::string pattern;  ///< glob on the variable name or a source file
};

/// Everything `CTXPOOL_DIAGNOSTICS` can say, and a little more for programs.
struct options {
  diagnostics::mode mode = mode::residue;
  int exitcode = 66;           ///< exit status at exit when anything was found (0: leave it)
  bool halt_on_error = false;  ///< exit with `exitcode` at the first finding
  std::string
      report_path;  ///< empty: no report file; "%p" is replaced by the process id; shared, see above
  std::string
      srcroot;  ///< SARIF's `%SRCROOT%`; empty: $GITHUB_WORKSPACE or the git root, see above
  report_format format = report_format::json;
  std::string suppressions_path;          ///< read by `enable`
  std::vector<suppression> suppressions;  ///< used in addition to the file's
  bool leaks = false;                     ///< leak accounting for context values and contexts
  bool thread_locals = true;  ///< also check plain `thread_local`s (Linux; see diagnostics.hpp)
  /// Apply the shipped `thread-cache:` list of common libraries' per-thread
  /// caches (abseil's `RandomSeed()::counter`, protobuf's
  /// `ThreadSafeArena::thread_cache_`, ...); 0 reports them like any variable.
  bool default_suppressions = true;
  bool print = true;  ///< print findings to stderr as they occur (programs only)
};

/// Parses a `CTXPOOL_DIAGNOSTICS` value. Pure: files are not touched (the
/// suppressions file is read and the report opened by `enable`). An empty
/// value means `off`.
/// @throws config_error naming the bad part.
[[nodiscard]] options parse_options(std::string_view spec);

/// Parses the text of a suppressions file; `source` names it in errors.
/// @throws config_error for a line that is not `kind:pattern` or an unknown kind.
[[nodiscard]] std::vector<suppression> parse_suppressions(std::string_view text,
                                                          std::string_view source = "suppressions");

/// "text", "json" or "sarif".
[[nodiscard]] std::string_view to_string(report_format format) noexcept;

}  // namespace ctxpool::diagnostics
