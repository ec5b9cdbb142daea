// The residue detector: task identity per thread, write records and
// tombstones, findings with deduplication and suppressions, leak accounting,
// configuration from CTXPOOL_DIAGNOSTICS and the exit status.
#include <ctxpool/diagnostics.hpp>

#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <ctxpool/detail/map.hpp>
#include <ctxpool/detail/small_alloc.hpp>
#include <ctxpool/detail/state.hpp>
#include <fmt/format.h>

#include "detector.hpp"

namespace ctxpool::diagnostics {
namespace detail {
namespace {

// ---- per-thread task identity -------------------------------------------------

/// One task on this thread's stack of current tasks (inline dispatch nests).
struct frame {
  std::uint64_t id;
  std::source_location submit_site;
  std::string_view name;  // the pool's; valid while the task runs
  std::uint64_t seq;      // this thread's task count when the task began
};

inline constexpr unsigned max_depth = 32;  // deeper nesting is attributed to frame 31

/// Trivially destructible, so that hooks called while the thread's other
/// thread_locals are being destroyed still find it intact.
struct thread_state {
  std::uint64_t ordinal;    // the detector's thread number, 0 until first needed
  std::int64_t worker;      // the pool's worker index, or -1
  std::uint64_t tasks_run;  // tasks begun on this thread
  unsigned depth;
  frame stack[max_depth];
};
constinit thread_local thread_state ts{0, -1, 0, 0, {}};

constinit std::atomic<std::uint64_t> next_thread_ordinal{1};

std::uint64_t thread_ordinal() noexcept {
  if (ts.ordinal == 0) ts.ordinal = next_thread_ordinal.fetch_add(1, std::memory_order_relaxed);
  return ts.ordinal;
}

const frame* current_frame() noexcept {
  if (ts.depth == 0) return nullptr;
  return &ts.stack[std::min(ts.depth, max_depth) - 1];
}

std::uint64_t current_lineage() noexcept {
  const ctxpool::detail::context_box* box = ctxpool::detail::tls.current;
  return box == nullptr ? 0 : box->lineage;
}

/// What the context layer keeps with a written value and, after the wipe, as
/// its tombstone.
struct write_rec {
  std::uint64_t task_id;
  std::source_location submit_site;
  std::source_location write_site;
  std::uint64_t seq;
  std::uint64_t lineage;
  std::string task_name;
};

/// Write records come and go once per task write: recycle their blocks
/// through the context layer's per-thread free lists.
template <class T>
struct record_allocator {
  using value_type = T;
  record_allocator() noexcept = default;
  template <class U>
  explicit record_allocator(const record_allocator<U>& /*other*/) noexcept {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(ctxpool::detail::small_alloc(n * sizeof(T)));
  }
  void deallocate(T* block, std::size_t n) noexcept {
    ctxpool::detail::small_free(block, n * sizeof(T));
  }
  friend bool operator==(const record_allocator&, const record_allocator&) noexcept {
    return true;
  }
};

task_ref ref_of(const frame* f) {
  if (f == nullptr) return {};
  return {f->id, std::string(f->name), f->submit_site};
}

// ---- process-wide state ---------------------------------------------------------

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

struct state {
  std::mutex mutex;  // guards everything below up to the leak section
  options opts;
  std::vector<suppression_count> suppressions;
  std::vector<finding> list;
  std::unordered_map<std::string, std::size_t> index;  // dedup key -> position in list
  std::uint64_t seq = 0;
  // Changes whenever `list` is reordered or emptied or the suppressions
  // change, invalidating the positions that threads cache (repeat_cache).
  std::uint64_t generation = 1;
  std::string report_path;  // resolved ("%p" replaced); empty: no report
  bool exit_handler_registered = false;
  bool finished = false;

  std::mutex leak_mutex;  // guards the leak section
  std::set<std::string, std::less<>> names;
  std::unordered_map<const void*, value_rec> values;
  std::unordered_map<const void*, context_rec> contexts;
};

state& the_state() {
  static state* instance = new state;  // never destroyed: hooks may run during exit
  return *instance;
}

constinit std::atomic<bool> detection_on{false};
constinit std::atomic<bool> leaks_on{false};

// ---- recording --------------------------------------------------------------------

bool glob(const std::string& pattern, std::string_view text) {
  const std::string subject(text);
  if (::fnmatch(pattern.c_str(), subject.c_str(), 0) == 0) return true;
  const std::size_t slash = subject.rfind('/');
  return slash != std::string::npos &&
         ::fnmatch(pattern.c_str(), subject.c_str() + slash + 1, 0) == 0;
}

bool kind_matches(std::string_view rule, finding_kind kind) {
  if (rule == "*" || rule == to_string(kind)) return true;
  return rule == "leak" &&
         (kind == finding_kind::leaked_value || kind == finding_kind::leaked_context);
}

bool matches(const suppression& rule, const finding& f) {
  if (!kind_matches(rule.kind, f.kind)) return false;
  if (!f.variable.empty() && glob(rule.pattern, f.variable)) return true;
  for (const std::source_location* site :
       {&f.site, &f.write_site, &f.task.submit_site, &f.writer.submit_site}) {
    if (site->line() != 0 && glob(rule.pattern, site->file_name())) return true;
  }
  return false;
}

std::string site_key(const std::source_location& site) {
  return fmt::format("{}:{}", site.file_name(), site.line());
}

std::string dedup_key(const finding& f) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{}", to_string(f.kind), f.variable, f.type,
                     site_key(f.site), site_key(f.write_site), site_key(f.task.submit_site),
                     site_key(f.writer.submit_site));
}

[[noreturn]] void halt(int exitcode);

/// Where one occurrence went: a position in `list` or in `suppressions`.
struct placement {
  std::uint64_t generation = 0;  // 0: nowhere (not recorded)
  std::size_t index = 0;
  bool suppressed = false;
};

/// Records one occurrence of `f`: suppressed, counted against an earlier
/// identical finding, or new (then printed, and with halt_on_error the end).
placement record(finding f) noexcept {
  try {
    state& s = the_state();
    std::unique_lock lock(s.mutex);
    for (std::size_t i = 0; i < s.suppressions.size(); ++i) {
      if (matches(s.suppressions[i].rule, f)) {
        ++s.suppressions[i].hits;
        return {s.generation, i, true};
      }
    }
    f.last_seen = ++s.seq;
    const auto [it, inserted] = s.index.try_emplace(dedup_key(f), s.list.size());
    if (!inserted) {
      finding& earlier = s.list[it->second];
      ++earlier.count;
      earlier.last_seen = f.last_seen;
      return {s.generation, it->second, false};
    }
    const placement where{s.generation, s.list.size(), false};
    s.list.push_back(f);
    if (s.opts.print) {
      const std::string text = format_finding(f);
      std::fwrite(text.data(), 1, text.size(), stderr);
      std::fflush(stderr);
    }
    if (s.opts.halt_on_error) {
      const int code = s.opts.exitcode;
      lock.unlock();
      halt(code);
    }
    return where;
  } catch (...) {
    // Out of memory while reporting: nothing better to do than to drop it.
    return {};
  }
}

/// The sites of the last stale read this thread recorded and where it went,
/// so that a repeat (a loop reading a tombstone, the same bug in every
/// request) is counted without building and formatting a finding again.
struct repeat_cache {
  const char* variable;  // the slot's name (stable while the variable lives)
  const char* sites[4];  // file names: read, write, reading task's, writing task's submit
  std::uint_least32_t lines[4];
  placement where;
};
constinit thread_local repeat_cache last_stale_read{};
constinit thread_local repeat_cache last_residue{};  // sites: only the task's submit site

/// Counts a repeat of the finding cached in `last`, if `key` is the same and
/// the cache is still valid. The variable's name is compared in full:
/// another variable may live where a destroyed one was.
bool count_repeat(const repeat_cache& last, const repeat_cache& key,
                  std::string_view variable) noexcept {
  if (last.where.generation == 0 || last.variable != key.variable) return false;
  for (int i = 0; i < 4; ++i) {
    if (last.sites[i] != key.sites[i] || last.lines[i] != key.lines[i]) return false;
  }
  state& s = the_state();
  std::lock_guard lock(s.mutex);
  if (last.where.generation != s.generation) return false;
  if (last.where.suppressed) {
    if (last.where.index >= s.suppressions.size()) return false;
    ++s.suppressions[last.where.index].hits;
    return true;
  }
  if (last.where.index >= s.list.size()) return false;
  finding& earlier = s.list[last.where.index];
  if (earlier.variable != variable) return false;
  ++earlier.count;
  earlier.last_seen = ++s.seq;
  return true;
}

// ---- the observer -------------------------------------------------------------------

class detector final : public residue_observer, public task_observer {
 public:
  // task_observer
  void on_thread_start(std::size_t worker_index) noexcept override {
    ts.worker = static_cast<std::int64_t>(worker_index);
    (void)thread_ordinal();
  }
  void on_thread_stop(std::size_t /*worker_index*/) noexcept override {}
  void on_task_begin(const task_info& task) noexcept override {
    ++ts.tasks_run;
    if (ts.depth < max_depth) {
      ts.stack[ts.depth] = {task.id, task.submit_site, task.name, ts.tasks_run};
    }
    ++ts.depth;
  }
  void on_task_end(const task_info& /*task*/) noexcept override {
    if (ts.depth > 0) --ts.depth;
  }

  // residue_observer
  write_record on_write(const slot_view& /*slot*/, std::source_location where) noexcept override {
    const frame* task = current_frame();
    // Written outside any task (a thread start hook, the thread's own setup):
    // such values are never wiped, so they leave no tombstone.
    if (task == nullptr) return nullptr;
    try {
      return std::allocate_shared<const write_rec>(
          record_allocator<write_rec>{},
          write_rec{task->id, task->submit_site, where, task->seq, current_lineage(),
                    std::string(task->name)});
    } catch (...) {
      return nullptr;
    }
  }

  void on_stale_read(const slot_view& slot, const write_record& writer,
                     std::source_location where) noexcept override {
    const auto* rec = static_cast<const write_rec*>(writer.get());
    if (rec == nullptr) return;
    const frame* reader = current_frame();
    // A task reading back what it wrote itself (an inner scope wiped it).
    if (reader != nullptr && reader->id == rec->task_id) return;
    const std::source_location reader_submit =
        reader != nullptr ? reader->submit_site : std::source_location{};
    repeat_cache key{slot.name.data(),
                     {where.file_name(), rec->write_site.file_name(), reader_submit.file_name(),
                      rec->submit_site.file_name()},
                     {where.line(), rec->write_site.line(), reader_submit.line(),
                      rec->submit_site.line()},
                     {}};
    if (count_repeat(last_stale_read, key, slot.name)) return;
    try {
      finding f;
      f.kind = finding_kind::stale_read;
      f.variable = std::string(slot.name);
      f.type = std::string(slot.type_name);
      f.task = ref_of(reader);
      f.site = where;
      f.writer = {rec->task_id, rec->task_name, rec->submit_site};
      f.write_site = rec->write_site;
      f.thread = thread_ordinal();
      f.worker = ts.worker;
      const std::uint64_t now = reader != nullptr ? reader->seq : ts.tasks_run + 1;
      f.tasks_between = now > rec->seq ? now - rec->seq - 1 : 0;
      // Same lineage: a coroutine's later step, or work posted from the
      // writer's context. Still reported (see diagnostics.hpp), with a note.
      f.same_context = rec->lineage != 0 && rec->lineage == current_lineage();
      key.where = record(std::move(f));
      last_stale_read = key;
    } catch (...) {
    }
  }

  void on_watched_residue(const slot_view& slot) noexcept override {
    const frame* task = current_frame();
    const std::source_location submit = task != nullptr ? task->submit_site : std::source_location{};
    repeat_cache key{slot.name.data(), {"", "", submit.file_name(), ""}, {0, 0, submit.line(), 0}, {}};
    if (count_repeat(last_residue, key, slot.name)) return;
    try {
      finding f;
      f.kind = finding_kind::residue;
      f.variable = std::string(slot.name);
      f.type = std::string(slot.type_name);
      f.task = ref_of(task);
      f.thread = thread_ordinal();
      f.worker = ts.worker;
      key.where = record(std::move(f));
      last_residue = key;
    } catch (...) {
    }
  }

  void on_value_created(const void* value, std::string_view var_name,
                        std::string_view type_name) noexcept override {
    if (!leaks_on.load(std::memory_order_relaxed)) return;
    try {
      task_ref task = ref_of(current_frame());
      const std::uint64_t thread = thread_ordinal();
      state& s = the_state();
      std::lock_guard lock(s.leak_mutex);
      const std::string* var = &*s.names.emplace(var_name).first;
      const std::string* type = &*s.names.emplace(type_name).first;
      s.values.insert_or_assign(value, value_rec{var, type, std::move(task), thread});
    } catch (...) {
    }
  }
  void on_value_destroyed(const void* value) noexcept override {
    if (!leaks_on.load(std::memory_order_relaxed)) return;
    state& s = the_state();
    std::lock_guard lock(s.leak_mutex);
    s.values.erase(value);
  }
  void on_context_created(const void* ctx) noexcept override {
    if (!leaks_on.load(std::memory_order_relaxed)) return;
    try {
      task_ref task = ref_of(current_frame());
      const std::uint64_t thread = thread_ordinal();
      state& s = the_state();
      std::lock_guard lock(s.leak_mutex);
      s.contexts.insert_or_assign(ctx, context_rec{std::move(task), thread});
    } catch (...) {
    }
  }
  void on_context_destroyed(const void* ctx) noexcept override {
    if (!leaks_on.load(std::memory_order_relaxed)) return;
    state& s = the_state();
    std::lock_guard lock(s.leak_mutex);
    s.contexts.erase(ctx);
  }
};

detector& the_detector() {
  static detector* instance = new detector;  // never destroyed: worker threads may outlive statics
  return *instance;
}

// ---- the end of the run -----------------------------------------------------------

/// Prints the SUMMARY lines and writes the report, once.
/// @returns whether anything was found.
bool finish(bool leak_check) noexcept {
  try {
    if (leak_check && leaks_on.load(std::memory_order_relaxed)) check_leaks();
    state& s = the_state();
    std::lock_guard lock(s.mutex);
    const bool found = !s.list.empty();
    if (s.finished) return found;
    s.finished = true;
    run_summary run{s.list, s.suppressions};
    const std::string summary = format_summary(run);
    std::fwrite(summary.data(), 1, summary.size(), stderr);
    std::fflush(stderr);
    if (!s.report_path.empty() && !write_report(s.report_path, s.opts.format, run)) {
      std::fprintf(stderr, "ctxpool: cannot write report '%s': %s\n", s.report_path.c_str(),
                   std::strerror(errno));
    }
    return found;
  } catch (...) {
    return true;
  }
}

[[noreturn]] void halt(int exitcode) {
  finish(false);
  std::fflush(nullptr);
  ::_exit(exitcode);
}

void at_exit() noexcept {
  state& s = the_state();
  int exitcode = 0;
  {
    std::lock_guard lock(s.mutex);
    exitcode = s.opts.exitcode;
  }
  if (finish(true) && exitcode != 0) {
    std::fflush(nullptr);
    ::_exit(exitcode);
  }
}

std::string resolve_report_path(const std::string& path) {
  std::string result;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 1 < path.size() && path[i + 1] == 'p') {
      result += std::to_string(::getpid());
      ++i;
    } else {
      result += path[i];
    }
  }
  return result;
}

std::vector<suppression> read_suppressions_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw config_error(fmt::format(
        "CTXPOOL_DIAGNOSTICS: cannot read suppressions file '{}': {}", path,
        std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_suppressions(text.str(), path);
}

void enable_now(options opts);

/// Reads CTXPOOL_DIAGNOSTICS once; a bad value ends the process.
bool init_from_environment() noexcept {
  const char* spec = std::getenv("CTXPOOL_DIAGNOSTICS");
  if (spec == nullptr) return true;
  try {
    options opts = parse_options(spec);
    if (opts.mode == mode::off) return true;
    enable_now(std::move(opts));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ctxpool: %s\nctxpool: CTXPOOL_DIAGNOSTICS='%s' is invalid; exiting\n",
                 e.what(), spec);
    std::fflush(stderr);
    std::_Exit(2);
  }
  return true;
}

void ensure_initialized() noexcept {
  [[maybe_unused]] static const bool done = init_from_environment();
}

// Reads the environment before main, so detection is active before the first
// task of any pool, even one built in a static initializer elsewhere (which
// reaches ensure_initialized through enabled() first).
[[maybe_unused]] const bool initialized_at_startup = (ensure_initialized(), true);

/// Every value reachable from the map rooted at `node`.
void collect_values(const ctxpool::detail::map_node* node,
                    std::unordered_set<const void*>& out) {
  if (node == nullptr) return;
  const int leaves = std::popcount(node->leaves);
  const int children = std::popcount(node->children);
  for (int i = 0; i < leaves; ++i) out.insert(node->slots()[i]);
  for (int i = 0; i < children; ++i) {
    collect_values(static_cast<const ctxpool::detail::map_node*>(node->slots()[leaves + i]), out);
  }
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

}  // namespace detail

// ---- public API -------------------------------------------------------------------------

bool enabled() noexcept {
  detail::ensure_initialized();
  return detail::detection_on.load(std::memory_order_acquire);
}

task_observer* pool_observer() noexcept {
  return enabled() ? &detail::the_detector() : nullptr;
}

std::uint64_t next_task_id() noexcept {
  static constinit std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

void enable(options opts) {
  detail::ensure_initialized();
  if (opts.mode == mode::off) {
    disable();
    return;
  }
  detail::enable_now(std::move(opts));
}

namespace detail {
namespace {

void enable_now(options opts) {
  std::vector<detail::suppression_count> rules;
  if (!opts.suppressions_path.empty()) {
    for (auto& rule : detail::read_suppressions_file(opts.suppressions_path)) {
      rules.push_back({std::move(rule), 0});
    }
  }
  for (const auto& rule : opts.suppressions) rules.push_back({rule, 0});

  std::string report_path;
  if (!opts.report_path.empty()) {
    report_path = detail::resolve_report_path(opts.report_path);
    // Checked now, written at exit. Not truncated: the processes of one test
    // run add to the same report.
    std::FILE* report = std::fopen(report_path.c_str(), "a");
    if (report == nullptr) {
      throw config_error(fmt::format("CTXPOOL_DIAGNOSTICS: cannot write report '{}': {}",
                                     report_path, std::strerror(errno)));
    }
    std::fclose(report);
  }

  detail::state& s = detail::the_state();
  bool register_handler = false;
  {
    std::lock_guard lock(s.mutex);
    s.report_path = std::move(report_path);
    s.suppressions = std::move(rules);
    ++s.generation;
    s.opts = std::move(opts);
    s.finished = false;
    register_handler = !std::exchange(s.exit_handler_registered, true);
    detail::leaks_on.store(s.opts.leaks, std::memory_order_relaxed);
  }
  if (register_handler) std::atexit([] { detail::at_exit(); });
  set_residue_observer(&detail::the_detector());
  detail::detection_on.store(true, std::memory_order_release);
}

}  // namespace
}  // namespace detail

void disable() noexcept {
  detail::ensure_initialized();
  detail::detection_on.store(false, std::memory_order_release);
  set_residue_observer(nullptr);
  detail::leaks_on.store(false, std::memory_order_relaxed);
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.leak_mutex);
  s.values.clear();
  s.contexts.clear();
}

options current_options() {
  detail::ensure_initialized();
  options result;
  if (!enabled()) {
    result.mode = mode::off;
    return result;
  }
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.mutex);
  result = s.opts;
  return result;
}

std::vector<finding> findings() {
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.mutex);
  return s.list;
}

std::vector<finding> take_findings() {
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.mutex);
  std::vector<finding> result;
  result.swap(s.list);
  s.index.clear();
  ++s.generation;
  return result;
}

void clear_findings() noexcept {
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.mutex);
  s.list.clear();
  s.index.clear();
  ++s.generation;
  for (auto& rule : s.suppressions) rule.hits = 0;
}

std::uint64_t finding_mark() noexcept {
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.mutex);
  return s.seq;
}

std::vector<finding> take_findings_since(std::uint64_t mark) {
  detail::state& s = detail::the_state();
  std::lock_guard lock(s.mutex);
  std::vector<finding> taken;
  std::vector<finding> kept;
  for (finding& f : s.list) (f.last_seen > mark ? taken : kept).push_back(std::move(f));
  s.list = std::move(kept);
  s.index.clear();
  ++s.generation;
  for (std::size_t i = 0; i < s.list.size(); ++i) s.index.emplace(detail::dedup_key(s.list[i]), i);
  return taken;
}

void check_leaks() {
  std::vector<finding> found;
  {
    detail::state& s = detail::the_state();
    std::lock_guard lock(s.leak_mutex);
    std::unordered_set<const void*> held;
    for (const auto& [ctx, rec] : s.contexts) {
      const auto* box = static_cast<const ctxpool::detail::context_box*>(ctx);
      detail::collect_values(box->root, held);
    }
    for (const auto& [value, rec] : s.values) {
      if (held.contains(value)) continue;
      finding f;
      f.kind = finding_kind::leaked_value;
      f.variable = *rec.variable;
      f.type = *rec.type;
      f.task = rec.task;
      f.thread = rec.thread;
      found.push_back(std::move(f));
    }
    for (const auto& [ctx, rec] : s.contexts) {
      if (rec.task.id == 0) continue;  // made outside any task: nobody's residue
      finding f;
      f.kind = finding_kind::leaked_context;
      f.variable = "<context>";
      f.type = "ctxpool::context";
      f.task = rec.task;
      f.thread = rec.thread;
      found.push_back(std::move(f));
    }
  }
  for (finding& f : found) detail::record(std::move(f));
}

}  // namespace ctxpool::diagnostics
