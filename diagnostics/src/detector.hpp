// Private interface between the detector, the detection model and the report
// writers: the process-wide state, recording a finding, the end-of-run summary.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <ctxpool/diagnostics/findings.hpp>
#include <ctxpool/diagnostics/options.hpp>

namespace ctxpool::diagnostics::detail {

/// What a suppression line matched, for the end-of-run counts.
struct suppression_count {
  suppression rule;
  std::uint64_t hits = 0;
};

/// Everything a report needs at the end of the run.
struct run_summary {
  std::vector<finding> findings;  ///< still pending and taken by test guards, merged
  std::vector<suppression_count> suppressions;
  std::string plain_note;  ///< how plain thread_locals were watched, when worth saying; may be empty
};

/// Number of occurrences and unique findings of `kind`.
struct kind_total {
  std::uint64_t unique = 0;
  std::uint64_t occurrences = 0;
};
[[nodiscard]] kind_total total_of(const std::vector<finding>& all, finding_kind kind) noexcept;

/// The SUMMARY lines and suppression counts, as printed at exit.
[[nodiscard]] std::string format_summary(const run_summary& run);

/// Adds this process's report to the file at `path`, under an exclusive
/// lock: text and JSON lines are appended, SARIF results are merged into the
/// file's single run (a file that is not a ctxpool SARIF log is replaced).
/// `srcroot` is the `srcroot=` option (see options.hpp).
/// @returns false if the file could not be written.
bool write_report(const std::string& path, report_format format, std::string_view srcroot,
                  const run_summary& run);

// ---- process-wide state --------------------------------------------------------

/// Where one occurrence went: a position in `list` or in `suppressions`.
struct placement {
  std::uint64_t generation = 0;  // 0: nowhere (not recorded)
  std::size_t index = 0;
  bool suppressed = false;
};

struct value_rec {
  const std::string* variable;  // interned
  const std::string* type;
  task_ref task;
  std::uint64_t thread;
};

struct context_rec {
  task_ref task;
  std::uint64_t thread;
};

struct model_state;  // model.cpp

struct state {
  std::mutex mutex;  // guards everything below up to the leak section, and the model
  options opts;
  std::vector<suppression_count> suppressions;
  std::vector<finding> list;     // pending: they decide the exit status
  std::vector<finding> handled;  // taken by a test guard: reported, not counted for the exit
  std::unordered_map<std::string, std::size_t> index;  // dedup key -> position in list
  // Changes whenever `list` is reordered or emptied or the suppressions
  // change, invalidating positions and record pointers that threads cache.
  std::atomic<std::uint64_t> generation{1};
  std::string report_path;  // resolved ("%p" replaced); empty: no report
  bool exit_handler_registered = false;
  bool finished = false;
  model_state* model = nullptr;  // created with the state, never destroyed

  std::mutex leak_mutex;  // guards the leak section
  std::set<std::string, std::less<>> names;
  std::unordered_map<const void*, value_rec> values;
  std::unordered_map<const void*, context_rec> contexts;
};

/// The one state; never destroyed (hooks may run during exit).
state& the_state();

/// The detector-wide occurrence clock behind `finding::last_seen`.
[[nodiscard]] std::uint64_t next_occurrence() noexcept;
[[nodiscard]] std::uint64_t last_occurrence() noexcept;

/// The deduplication key of a finding: kind, variable, type and every site.
[[nodiscard]] std::string dedup_key(const finding& f);

/// Records one occurrence of `f` with `s.mutex` held by `lock`: suppressed,
/// counted against an earlier identical pending finding, or new (then
/// printed). With halt_on_error a new finding ends the process here (the lock
/// is released first).
placement record_locked(std::unique_lock<std::mutex>& lock, finding f);

/// Whether the plain thread_local `name` is a declared per-thread cache: a
/// `thread-cache:` suppression, `CTXPOOL_THREAD_CACHE`, or the state of a
/// library the program does not own (ctxpool, the C++ runtime, Boost, test
/// frameworks). Counts the matching suppression line. Takes `s.mutex`.
[[nodiscard]] bool is_thread_cache(std::string_view name);

// ---- the detection model (model.cpp) -------------------------------------------

/// A task as the model sees it.
struct task_view {
  std::uint64_t id = 0;
  std::string_view name;
  std::source_location submit_site{};
};

/// A variable as the model sees it. `key` is process-unique: a
/// `thread_local_var`/`local_stack` id, or a plain thread_local's index
/// with `plain_key_bit` set.
struct slot_desc {
  std::uint64_t key = 0;
  std::string_view name;
  std::string_view type;
  std::string_view module;
  std::size_t size = 0;
};
inline constexpr std::uint64_t plain_key_bit = std::uint64_t{1} << 32;

/// The reading side of one first access.
struct read_desc {
  std::source_location site{};           ///< a thread_local_var read
  const code_location* plain = nullptr;  ///< a plain thread_local read
  std::uint64_t thread = 0;
  std::int64_t worker = -1;
};

/// `task` (running in a context of `lineage`) ends leaving `slot` dirty, last
/// written at `write_site`. `alone`: a finding by itself (a plain
/// thread_local whose reads cannot be watched).
void model_left_dirty(const slot_desc& slot, std::source_location write_site,
                      const task_view& task, std::uint64_t lineage, bool alone) noexcept;

/// `task`'s first access to `slot` is a read.
void model_read_first(const slot_desc& slot, const read_desc& read, const task_view& task,
                      std::uint64_t lineage) noexcept;

/// With `s.mutex` held: forgets every record (clear_findings, enable).
void model_forget_locked(state& s) noexcept;

/// With `s.mutex` held: brings the counts of the model's findings in `list`
/// and of the suppressions up to date (repeats are counted without the lock).
void model_refresh_locked(state& s) noexcept;

/// With `s.mutex` held: the model's pending findings in `taken` are being
/// taken; later occurrences count from zero again.
void model_taken_locked(state& s, const std::vector<finding>& taken) noexcept;

}  // namespace ctxpool::diagnostics::detail
