// The session (session.hpp): detection switched on and off, the public
// functions that read and withdraw findings, and the end of the run.
#include "session.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

#include <ctxpool/diagnostics.hpp>
#include <fmt/format.h>

#include "finding_store.hpp"
#include "leak_check.hpp"
#include "model.hpp"
#include "observer.hpp"
#include "plain_bridge.hpp"
#include "report.hpp"
#include "suppressions.hpp"

namespace ctxpool::diagnostics {
namespace detail {
namespace {

/// What enable() set up; guarded by `mutex`, taken after the store's.
struct session_state {
  std::mutex mutex;
  options opts;
  std::string report_path;  // resolved ("%p" replaced); empty: no report
  bool exit_handler_registered = false;
  bool finished = false;
};

session_state& the_session() {
  static session_state* instance = new session_state;  // never destroyed: hooks may run during exit
  return *instance;
}

constinit std::atomic<bool> detection_on{false};

/// Prints the SUMMARY lines and writes the report, once.
/// @returns whether anything was found.
bool finish(bool leak_check) noexcept {
  try {
    if (leak_check && leak_tracking()) check_leaks();
    finding_store& store = the_store();
    std::lock_guard lock(store.mutex);
    model_refresh_locked(store);
    const bool found = !store.pending.empty();
    session_state& session = the_session();
    std::lock_guard session_lock(session.mutex);
    if (session.finished) return found;
    session.finished = true;
    const bool clean = store.pending.empty() && store.handled.empty();
    run_summary run{reported_findings_locked(store), the_suppressions().counts(),
                    plain_note(!clean)};
    const std::string summary = format_summary(run);
    std::fwrite(summary.data(), 1, summary.size(), stderr);
    std::fflush(stderr);
    if (!session.report_path.empty() &&
        !write_report(session.report_path, session.opts.format, session.opts.srcroot, run)) {
      std::fprintf(stderr, "ctxpool: cannot write report '%s': %s\n", session.report_path.c_str(),
                   std::strerror(errno));
    }
    return found;
  } catch (...) {
    return true;
  }
}

int configured_exitcode() noexcept {
  session_state& session = the_session();
  std::lock_guard lock(session.mutex);
  return session.opts.exitcode;
}

void at_exit() noexcept {
  const int exitcode = configured_exitcode();
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
    throw config_error(fmt::format("CTXPOOL_DIAGNOSTICS: cannot read suppressions file '{}': {}",
                                   path, std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_suppressions(text.str(), path);
}

void enable_now(options opts) {
  std::vector<suppression> rules;
  if (!opts.suppressions_path.empty()) rules = read_suppressions_file(opts.suppressions_path);
  rules.insert(rules.end(), opts.suppressions.begin(), opts.suppressions.end());

  std::string report_path;
  if (!opts.report_path.empty()) {
    report_path = resolve_report_path(opts.report_path);
    // Checked now, written at exit. Not truncated: the processes of one test
    // run add to the same report.
    std::FILE* report = std::fopen(report_path.c_str(), "a");
    if (report == nullptr) {
      throw config_error(fmt::format("CTXPOOL_DIAGNOSTICS: cannot write report '{}': {}",
                                     report_path, std::strerror(errno)));
    }
    std::fclose(report);
  }

  bool register_handler = false;
  {
    finding_store& store = the_store();
    std::lock_guard lock(store.mutex);
    the_suppressions().reset(std::move(rules), opts.default_suppressions);
    store.generation.fetch_add(1, std::memory_order_release);
    store.print = opts.print;
    store.halt_on_error = opts.halt_on_error;
    model_forget_locked();
    set_leak_tracking(opts.leaks);
    set_plain_checking(opts.thread_locals);
    session_state& session = the_session();
    std::lock_guard session_lock(session.mutex);
    session.report_path = std::move(report_path);
    session.opts = std::move(opts);
    session.finished = false;
    register_handler = !std::exchange(session.exit_handler_registered, true);
  }
  if (register_handler) std::atexit([] { at_exit(); });
  set_residue_observer(&the_residue_observer());
  detection_on.store(true, std::memory_order_release);
}

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

/// With the store's mutex held: hands the findings `taken` to the caller.
void take_locked(finding_store& store, const std::vector<finding>& taken) {
  model_taken_locked(taken);
  hand_over_locked(store, taken);
}

}  // namespace

void halt_run() noexcept {
  const int exitcode = configured_exitcode();
  finish(false);
  std::fflush(nullptr);
  ::_exit(exitcode);
}

}  // namespace detail

bool enabled() noexcept {
  detail::ensure_initialized();
  return detail::detection_on.load(std::memory_order_acquire);
}

void enable(options opts) {
  detail::ensure_initialized();
  if (opts.mode == mode::off) {
    disable();
    return;
  }
  detail::enable_now(std::move(opts));
}

void disable() noexcept {
  detail::ensure_initialized();
  detail::detection_on.store(false, std::memory_order_release);
  set_residue_observer(nullptr);
  detail::set_leak_tracking(false);
}

options current_options() {
  detail::ensure_initialized();
  options result;
  if (!enabled()) {
    result.mode = mode::off;
    return result;
  }
  detail::session_state& session = detail::the_session();
  std::lock_guard lock(session.mutex);
  result = session.opts;
  return result;
}

std::vector<finding> findings() {
  detail::finding_store& store = detail::the_store();
  std::lock_guard lock(store.mutex);
  detail::model_refresh_locked(store);
  return store.pending;
}

std::vector<finding> take_findings() {
  detail::finding_store& store = detail::the_store();
  std::lock_guard lock(store.mutex);
  detail::model_refresh_locked(store);
  std::vector<finding> result;
  result.swap(store.pending);
  detail::take_locked(store, result);
  return result;
}

void clear_findings() noexcept {
  detail::finding_store& store = detail::the_store();
  std::lock_guard lock(store.mutex);
  store.pending.clear();
  store.handled.clear();
  store.index.clear();
  detail::model_forget_locked();
  store.generation.fetch_add(1, std::memory_order_release);
  detail::the_suppressions().clear_hits();
}

std::uint64_t finding_mark() noexcept { return detail::last_occurrence(); }

std::vector<finding> take_findings_since(std::uint64_t mark) {
  detail::finding_store& store = detail::the_store();
  std::lock_guard lock(store.mutex);
  detail::model_refresh_locked(store);
  std::vector<finding> taken;
  std::vector<finding> kept;
  for (finding& f : store.pending) (f.last_seen > mark ? taken : kept).push_back(std::move(f));
  store.pending = std::move(kept);
  detail::take_locked(store, taken);
  return taken;
}

}  // namespace ctxpool::diagnostics
