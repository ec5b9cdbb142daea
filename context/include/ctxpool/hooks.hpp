// The hook points where a pool and the diagnostics layer meet the context layer.
//
// The context layer knows nothing of pools or reports. A pool tells observers
// when threads start and stop and when each task begins and ends
// (`task_observer`, folly's TaskObserver idea); the diagnostics layer installs
// a `residue_observer` to learn which task reads a thread-local slot before
// writing it and which leaves a value behind. With no observer installed every
// hook is one predictable branch.
//
// @par Thread safety
// `set_residue_observer` is meant to be called once at start-up, before pool
// threads exist; the observer's member functions are then called from every
// thread that touches slots and must be thread-safe themselves.
//
// @par Lifetime
// An installed observer must outlive every thread that may call it; install
// `nullptr` before destroying it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <source_location>
#include <string_view>

namespace ctxpool {

/// How long a thread-local slot's value lives on a pool thread.
enum class lifetime {
  task,    ///< wiped after every pool task (the default): request-scoped state
  thread,  ///< kept across tasks, destroyed at thread exit: a deliberate per-thread cache
};

/// What a pool tells observers about one task.
struct task_info {
  std::uint64_t id = 0;                ///< 0 when the pool assigns no ids (diagnostics off)
  std::source_location submit_site{};  ///< where submit/post/execute was called
  std::string_view name{};             ///< optional, user-given
};

/// Receives pool thread and task events; every member has a no-op default.
class task_observer {
 public:
  virtual ~task_observer() = default;
  /// On the new worker thread, before it runs any task.
  virtual void on_thread_start(std::size_t /*worker_index*/) noexcept {}
  /// On the worker thread, after its last task.
  virtual void on_thread_stop(std::size_t /*worker_index*/) noexcept {}
  /// On the worker, inside the task's context, before the task's function runs.
  virtual void on_task_begin(const task_info& /*task*/) noexcept {}
  /// On the worker, after the function returned or threw and after the
  /// task's thread-local slots were wiped.
  virtual void on_task_end(const task_info& /*task*/) noexcept {}
};

/// A thread-local slot as observers see it.
struct slot_view {
  std::string_view name;
  std::string_view type_name;  ///< demangled
  lifetime life;
  std::uint32_t id = 0;  ///< process-unique number of the variable (never reused)
  bool stack = false;    ///< a `local_stack` (else a `thread_local_var`)
  /// For task events: the nesting depth of the `slot_wipe_scope` reporting it
  /// (1: outermost), so that an observer can tell a scope no task observer
  /// announced (a bare `slot_wipe_scope`) from the task around it.
  unsigned scope_depth = 0;
};

/// Sees slot traffic and value lifecycles; installed by the diagnostics layer.
///
/// While an observer is installed, the context layer tracks, per thread and
/// per `lifetime::task` slot, whether the task running in the innermost
/// `slot_wipe_scope` has touched the slot yet, and reports the two facts the
/// residue model is built from: a task's first access being a read, and a
/// task leaving a value behind. Outside any task scope nothing is reported.
class residue_observer {
 public:
  virtual ~residue_observer() = default;

  /// The running task's first access to a `lifetime::task` slot on this
  /// thread is a read at `where` (for a `local_stack`: any first access, a
  /// push included, since a push lands on whatever an earlier task left).
  virtual void on_read_first(const slot_view& slot, std::source_location where) noexcept = 0;

  /// The task scope now ending leaves a value in `slot` (a non-empty stack);
  /// `last_write` is where it was last written on this thread. Called before
  /// the value is wiped.
  virtual void on_left_dirty(const slot_view& slot, std::source_location last_write) noexcept = 0;

  /// A watched plain `thread_local` was changed by the task now ending; it has
  /// been restored already.
  virtual void on_watched_residue(const slot_view& slot) noexcept = 0;

  /// A `slot_wipe_scope` at nesting depth `depth` (1: outermost) ended, after
  /// its wipe: lets the observer notice task scopes that no task observer
  /// announced (a pool built before detection was switched on).
  virtual void on_task_slots_end(unsigned /*depth*/) noexcept {}

  /// A context variable's value came into existence (for leak accounting).
  virtual void on_value_created(const void* /*value*/, std::string_view /*var_name*/,
                                std::string_view /*type_name*/) noexcept {}
  /// That value was destroyed.
  virtual void on_value_destroyed(const void* /*value*/) noexcept {}
  /// A context box (from copy_context or `context{}`) was created / destroyed.
  virtual void on_context_created(const void* /*ctx*/) noexcept {}
  virtual void on_context_destroyed(const void* /*ctx*/) noexcept {}
};

/// Installs the process-wide residue observer (nullptr removes it).
void set_residue_observer(residue_observer* observer) noexcept;

/// The installed residue observer, or nullptr.
[[nodiscard]] residue_observer* get_residue_observer() noexcept;

}  // namespace ctxpool
