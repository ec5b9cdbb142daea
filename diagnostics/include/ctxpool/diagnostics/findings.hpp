// What the residue detector found: the finding record and the API to read it.
//
// Each finding names its kind, the variable and its type (for a plain
// `thread_local`: its module and size), the tasks involved (id, name, submit
// site), the sites of the read and the write, and how many tasks left the
// variable dirty. Values are never recorded: a thread-local often holds a
// secret. Identical findings (same kind, variable, type and sites) are kept
// once, with a count.
//
// Tests read findings with `findings()` and `take_findings()`; test-framework
// guards (<ctxpool/diagnostics/doctest.hpp>, <ctxpool/diagnostics/gtest.hpp>)
// use `finding_mark()` and `take_findings_since()` to fail the test that
// produced one. Findings still recorded at exit make the process exit with
// the configured `exitcode`. Taking findings hands them to the caller: they no
// longer change the exit status (the test framework fails the test instead),
// but they still appear in the SUMMARY lines and the report file, so that a
// CI job's SARIF upload shows what failed it. `clear_findings()` discards
// them altogether.
//
// @par Thread safety
// Every function here may be called from any thread, concurrently with tasks
// that produce findings.
//
// @par Lifetime
// `finding` is a plain value (strings are copied); nothing refers back into
// the detector.
#pragma once

#include <cstdint>
#include <utility>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

namespace ctxpool::diagnostics {

/// The kinds of finding; `to_string` gives the names used in reports,
/// SUMMARY lines and suppressions.
enum class finding_kind {
  /// "stale-read": some task leaves the variable dirty and some task reads it
  /// before writing it; on an ordinary pool the reader can get the value.
  stale_read,
  /// "read-across-suspension": a coroutine step reads first what an earlier
  /// step of the same coroutine (the same context lineage) left behind.
  read_across_suspension,
  /// "residue": a task left a plain thread_local changed, reported on its own
  /// where reads cannot be watched, or a variable registered with
  /// `watch_thread_local` left changed.
  residue,
  leaked_value,    ///< "leaked-value": a context value alive at exit that no live context holds
  leaked_context,  ///< "leaked-context": a context made in a task, still alive at exit
};

/// "stale-read", "read-across-suspension", "residue", "leaked-value" or
/// "leaked-context".
[[nodiscard]] std::string_view to_string(finding_kind kind) noexcept;

/// A place in the program a finding names: where a task was submitted, a
/// variable read or written. Made from a `std::source_location` (a
/// `thread_local_var` access, a submit site) or from a machine instruction
/// (a plain `thread_local`'s access, symbolised as precisely as the debug
/// information allows); the accessors mirror `std::source_location`'s.
class code_location {
 public:
  /// An unknown location (`known()` is false).
  code_location() = default;
  /// The location `site` names; unknown if its line is 0.
  code_location(const std::source_location& site)  // NOLINT(google-explicit-constructor)
      : file_(site.line() != 0 ? site.file_name() : ""),
        function_(site.line() != 0 ? site.function_name() : ""),
        line_(site.line()),
        column_(site.column()) {}
  /// A location found from the instruction at `pc` (0: none); `file` is
  /// empty and `line` 0 without debug information, `function` empty without symbols.
  code_location(std::string file, std::uint_least32_t line, std::string function,
                std::uintptr_t pc = 0)
      : file_(std::move(file)), function_(std::move(function)), line_(line), pc_(pc) {}

  /// The source file; empty when unknown.
  [[nodiscard]] const char* file_name() const noexcept { return file_.c_str(); }
  /// The line; 0 when unknown.
  [[nodiscard]] std::uint_least32_t line() const noexcept { return line_; }
  /// The column; 0 when unknown (always for a location found from an instruction).
  [[nodiscard]] std::uint_least32_t column() const noexcept { return column_; }
  /// The (innermost user) function, demangled; may be empty.
  [[nodiscard]] const char* function_name() const noexcept { return function_.c_str(); }
  /// The instruction's address; 0 for a location from a `std::source_location`.
  [[nodiscard]] std::uintptr_t pc() const noexcept { return pc_; }
  /// Whether anything is known: a line, a function or an address.
  [[nodiscard]] bool known() const noexcept { return line_ != 0 || !function_.empty() || pc_ != 0; }

  /// The same place: the same file, line, column and function; without a
  /// line, the same instruction.
  friend bool operator==(const code_location& a, const code_location& b) noexcept {
    if (a.line_ != 0 || b.line_ != 0) {
      return a.line_ == b.line_ && a.column_ == b.column_ && a.file_ == b.file_ &&
             a.function_ == b.function_;
    }
    return a.pc_ == b.pc_ && a.function_ == b.function_;
  }

 private:
  std::string file_;
  std::string function_;
  std::uint_least32_t line_ = 0;
  std::uint_least32_t column_ = 0;
  std::uintptr_t pc_ = 0;
};

/// A task as a finding names it.
struct task_ref {
  std::uint64_t id = 0;       ///< 0: no task (the code ran outside any task)
  std::string name;           ///< may be empty
  code_location submit_site;  ///< unknown when the task was not submitted through a pool
};

/// One (deduplicated) finding.
struct finding {
  finding_kind kind = finding_kind::stale_read;
  std::string variable;  ///< the variable's name
  std::string type;      ///< its value type, demangled; empty for a plain thread_local
  std::string module;    ///< plain thread_local: the executable or library defining it
  std::size_t size = 0;  ///< plain thread_local: its size in bytes
  /// stale-read and read-across-suspension: the reading task; residue: the
  /// task that left the change; leaks: the task that created the value or context.
  task_ref task;
  code_location site;               ///< where the read happened (unknown for residue and leaks)
  task_ref writer;                  ///< the (first) task that left the value behind
  code_location write_site;         ///< where that value was last written (if known)
  std::uint64_t left_dirty = 0;     ///< how many tasks left the variable dirty from that site
  std::uint64_t thread = 0;         ///< the detector's number for the reader's thread (T1, T2, ...)
  std::int64_t worker = -1;         ///< the pool's worker index, -1 if unknown
  std::uint64_t tasks_between = 0;  ///< unused since findings stopped depending on threads; 0
  /// The reader continues the writer's context (read-across-suspension).
  bool same_context = false;
  std::uint64_t count = 1;  ///< how many times this finding occurred (reads, or leaves for residue)
  std::uint64_t last_seen = 0;  ///< detector-wide sequence number of its last occurrence
};

/// Where a report, a test framework or an editor points for `f`: the read,
/// else (residue) the write, else where its task was submitted; unknown for a
/// leak made outside any task.
[[nodiscard]] const code_location& site_of(const finding& f) noexcept;

/// The findings recorded so far, in the order they were first seen.
[[nodiscard]] std::vector<finding> findings();

/// The findings recorded so far; they are withdrawn from the exit status
/// (they still reach the SUMMARY lines and the report file).
[[nodiscard]] std::vector<finding> take_findings();

/// Discards every finding, taken ones included, resets the counts the SUMMARY
/// lines report, and forgets what tasks left dirty and read first (so that
/// one test's tasks cannot pair with the next test's).
void clear_findings() noexcept;

/// A mark to pass to `take_findings_since`: the sequence number of the
/// latest occurrence of any finding so far.
[[nodiscard]] std::uint64_t finding_mark() noexcept;

/// Withdraws from the exit status and returns the findings that occurred
/// (again) after `mark`; like `take_findings`, they still reach the report.
[[nodiscard]] std::vector<finding> take_findings_since(std::uint64_t mark);

/// How many task scopes ran with detection on that no task observer
/// announced: tasks of a pool built while detection was off (a pool reads
/// `enabled()` once, when it is built), or a bare `slot_wipe_scope`. Their
/// reads and writes cannot be attributed to tasks, so they are not checked;
/// test guards fail when this grows while they watch.
[[nodiscard]] std::uint64_t unobserved_tasks() noexcept;

/// The multi-line, grep-able text block that stderr shows for `f`.
[[nodiscard]] std::string format_finding(const finding& f);

/// Runs the leak accounting now (it also runs at exit with `leaks=1`) and
/// records what it finds. Values are reported when nothing but a token, a
/// captured snapshot or a leaked map still holds them; contexts when they were
/// created inside a task and are still alive. Only values and contexts made
/// while detection ran with `leaks` on are accounted for.
///
/// Unlike the rest of this header, call it while no other thread sets
/// context variables (between tests, at exit): it walks live contexts' maps.
void check_leaks();

}  // namespace ctxpool::diagnostics
