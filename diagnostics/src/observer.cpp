// The detector's observer: the pool's task hooks and the context layer's
// residue hooks, turned into task identity, the model's leaves and reads,
// watched-variable residue and leak accounting.
#include <ctxpool/diagnostics.hpp>

#include <ctxpool/detail/inspect.hpp>
#include <ctxpool/thread_local.hpp>

#include "finding_store.hpp"
#include "leak_check.hpp"
#include "model.hpp"
#include "observer.hpp"
#include "plain_bridge.hpp"
#include "session.hpp"
#include "task_identity.hpp"

namespace ctxpool::diagnostics {
namespace detail {
namespace {

variable_desc describe(const slot_view& slot) noexcept {
  return {slot.id, slot.name, slot.type_name, {}, 0};
}

class detector final : public residue_observer, public task_observer {
 public:
  // task_observer
  void on_thread_start(std::size_t worker_index) noexcept override {
    set_worker_index(static_cast<std::int64_t>(worker_index));
    (void)thread_ordinal();
  }
  void on_thread_stop(std::size_t /*worker_index*/) noexcept override {}
  void on_task_begin(const task_info& task) noexcept override {
    // Plain thread_locals are diffed per outermost task: a task run inline
    // inside another is part of it.
    if (push_task({task.id, task.submit_site, task.name}) == 1 && plain_task_begin()) {
      set_plain_open(true);
    }
  }
  void on_task_end(const task_info& /*task*/) noexcept override {
    bool halt = false;
    if (task_depth() == 1 && plain_open()) {
      set_plain_open(false);
      halt = plain_task_end(*current_frame());
    }
    pop_task();
    if (halt) halt_run();
  }

  // residue_observer
  void on_read_first(const slot_view& slot, std::source_location where) noexcept override {
    const frame* task = current_frame();
    // Not a task the detector was told about (a bare slot_wipe_scope, or a
    // pool built before detection was on): not attributable to a task.
    if (task == nullptr || slot.scope_depth > task_depth()) return;
    const read_desc read{{where, nullptr}, thread_ordinal(), worker_index()};
    if (model_read_first(describe(slot), read, view_of(*task),
                         ctxpool::detail::current_lineage())) {
      halt_run();
    }
  }

  void on_left_dirty(const slot_view& slot, std::source_location last_write) noexcept override {
    const frame* task = current_frame();
    if (task == nullptr || slot.scope_depth > task_depth()) return;
    if (model_left_dirty(describe(slot), {last_write, nullptr}, view_of(*task),
                         ctxpool::detail::current_lineage(), /*alone=*/false)) {
      halt_run();
    }
  }

  void on_task_slots_end(unsigned depth) noexcept override {
    if (task_depth() < depth) count_unobserved_scope();
  }

  void on_watched_residue(const slot_view& slot) noexcept override {
    bool halt = false;
    try {
      finding f;
      f.kind = finding_kind::residue;
      f.variable = std::string(slot.name);
      f.type = std::string(slot.type_name);
      f.task = ref_of(current_frame());
      f.thread = thread_ordinal();
      f.worker = worker_index();
      finding_store& store = the_store();
      std::lock_guard lock(store.mutex);
      halt = record_locked(store, std::move(f)).halt;
    } catch (...) {
    }
    if (halt) halt_run();
  }

  void on_value_created(const void* value, std::string_view var_name,
                        std::string_view type_name) noexcept override {
    track_value(value, var_name, type_name);
  }
  void on_value_destroyed(const void* value) noexcept override { untrack_value(value); }
  void on_context_created(const void* ctx) noexcept override { track_context(ctx); }
  void on_context_destroyed(const void* ctx) noexcept override { untrack_context(ctx); }
};

detector& the_detector() noexcept {
  // Never destroyed: worker threads may outlive statics. Out of memory this
  // early ends the program, as any first allocation would.
  static detector* instance = new detector;  // NOLINT(bugprone-unhandled-exception-at-new)
  return *instance;
}

}  // namespace

residue_observer& the_residue_observer() noexcept { return the_detector(); }

}  // namespace detail

task_observer* pool_observer() noexcept { return enabled() ? &detail::the_detector() : nullptr; }

}  // namespace ctxpool::diagnostics
