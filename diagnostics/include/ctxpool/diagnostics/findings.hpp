// What the residue detector found: the finding record and the API to read it.
//
// Each finding names its kind, the variable and its type, the tasks involved
// (id, name, submit site), the sites of the read and the write, the thread and
// how many tasks ran on that thread in between. Values are never recorded: a
// thread-local often holds a secret. Identical findings (same kind, variable,
// type and sites) are kept once, with a count.
//
// Tests read findings with `findings()` and `take_findings()`; see also
// <ctxpool/diagnostics/doctest.hpp>, which fails the test case that produced
// one. Findings that are still recorded at exit make the process exit with
// the configured `exitcode`; taking or clearing them withdraws them.
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
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

namespace ctxpool::diagnostics {

/// The kinds of finding; `to_string` gives the names used in reports,
/// SUMMARY lines and suppressions.
enum class finding_kind {
  stale_read,      ///< "stale-read": a task read a value an earlier task left on its thread
  residue,         ///< "residue": a task left a watched plain thread_local changed
  leaked_value,    ///< "leaked-value": a context value alive at exit that no live context holds
  leaked_context,  ///< "leaked-context": a context made in a task, still alive at exit
};

/// "stale-read", "residue", "leaked-value" or "leaked-context".
[[nodiscard]] std::string_view to_string(finding_kind kind) noexcept;

/// A task as a finding names it.
struct task_ref {
  std::uint64_t id = 0;                ///< 0: no task (the code ran outside any task)
  std::string name;                    ///< may be empty
  std::source_location submit_site{};  ///< line 0 when unknown
};

/// One (deduplicated) finding.
struct finding {
  finding_kind kind = finding_kind::stale_read;
  std::string variable;  ///< the variable's name
  std::string type;      ///< its value type, demangled
  /// stale-read: the reading task; residue: the task that left the change;
  /// leaks: the task that created the value or context.
  task_ref task;
  std::source_location site{};        ///< stale-read: where the read happened
  task_ref writer;                    ///< stale-read: the task that wrote the value
  std::source_location write_site{};  ///< stale-read: where it was written
  std::uint64_t thread = 0;           ///< the detector's number for the thread (T1, T2, ...)
  std::int64_t worker = -1;           ///< the pool's worker index, -1 if unknown
  std::uint64_t tasks_between = 0;    ///< stale-read: tasks that ran on the thread in between
  /// stale-read: the reader runs in a continuation of the writer's context (a
  /// coroutine's later step, or work the writer's context posted).
  bool same_context = false;
  std::uint64_t count = 1;            ///< how many times this finding occurred
  std::uint64_t last_seen = 0;        ///< detector-wide sequence number of its last occurrence
};

/// The findings recorded so far, in the order they were first seen.
[[nodiscard]] std::vector<finding> findings();

/// The findings recorded so far; they are withdrawn (they no longer count
/// for the exit status).
[[nodiscard]] std::vector<finding> take_findings();

/// Withdraws every finding (and resets the counts the SUMMARY lines report).
void clear_findings() noexcept;

/// A mark to pass to `take_findings_since`: the sequence number of the
/// latest occurrence of any finding so far.
[[nodiscard]] std::uint64_t finding_mark() noexcept;

/// Withdraws and returns the findings that occurred (again) after `mark`.
[[nodiscard]] std::vector<finding> take_findings_since(std::uint64_t mark);

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
