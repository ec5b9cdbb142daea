// Leak accounting (leak_check.hpp) and check_leaks().
#include "leak_check.hpp"

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <ctxpool/detail/inspect.hpp>
#include <ctxpool/diagnostics/findings.hpp>

#include "finding_store.hpp"
#include "session.hpp"
#include "task_identity.hpp"

namespace ctxpool::diagnostics {
namespace detail {
namespace {

struct value_record {
  const std::string* variable;  // interned
  const std::string* type;
  task_ref task;
  std::uint64_t thread;
};

struct context_record {
  task_ref task;
  std::uint64_t thread;
};

struct leak_state {
  std::mutex mutex;  // guards everything below
  std::set<std::string, std::less<>> names;
  std::unordered_map<const void*, value_record> values;
  std::unordered_map<const void*, context_record> contexts;
};

leak_state& leaks() {
  static leak_state* instance = new leak_state;  // never destroyed: hooks may run during exit
  return *instance;
}

constinit std::atomic<bool> leaks_on{false};

}  // namespace

void set_leak_tracking(bool on) noexcept {
  leaks_on.store(on, std::memory_order_relaxed);
  if (on) return;
  leak_state& l = leaks();
  std::lock_guard lock(l.mutex);
  l.values.clear();
  l.contexts.clear();
}

bool leak_tracking() noexcept { return leaks_on.load(std::memory_order_relaxed); }

void track_value(const void* value, std::string_view var_name,
                 std::string_view type_name) noexcept {
  if (!leak_tracking()) return;
  try {
    task_ref task = ref_of(current_frame());
    const std::uint64_t thread = thread_ordinal();
    leak_state& l = leaks();
    std::lock_guard lock(l.mutex);
    const std::string* var = &*l.names.emplace(var_name).first;
    const std::string* type = &*l.names.emplace(type_name).first;
    l.values.insert_or_assign(value, value_record{var, type, std::move(task), thread});
  } catch (...) {
  }
}

void untrack_value(const void* value) noexcept {
  if (!leak_tracking()) return;
  leak_state& l = leaks();
  std::lock_guard lock(l.mutex);
  l.values.erase(value);
}

void track_context(const void* ctx) noexcept {
  if (!leak_tracking()) return;
  try {
    task_ref task = ref_of(current_frame());
    const std::uint64_t thread = thread_ordinal();
    leak_state& l = leaks();
    std::lock_guard lock(l.mutex);
    l.contexts.insert_or_assign(ctx, context_record{std::move(task), thread});
  } catch (...) {
  }
}

void untrack_context(const void* ctx) noexcept {
  if (!leak_tracking()) return;
  leak_state& l = leaks();
  std::lock_guard lock(l.mutex);
  l.contexts.erase(ctx);
}

}  // namespace detail

void check_leaks() {
  std::vector<finding> found;
  {
    detail::leak_state& l = detail::leaks();
    std::lock_guard lock(l.mutex);
    std::unordered_set<const void*> held;
    for (const auto& [ctx, rec] : l.contexts) {
      ctxpool::detail::for_each_held_value(ctx, [&held](const void* value) { held.insert(value); });
    }
    for (const auto& [value, rec] : l.values) {
      if (held.contains(value)) continue;
      finding f;
      f.kind = finding_kind::leaked_value;
      f.variable = *rec.variable;
      f.type = *rec.type;
      f.task = rec.task;
      f.thread = rec.thread;
      found.push_back(std::move(f));
    }
    for (const auto& [ctx, rec] : l.contexts) {
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
  bool halt = false;
  {
    detail::finding_store& store = detail::the_store();
    std::lock_guard lock(store.mutex);
    for (finding& f : found) halt = detail::record_locked(store, std::move(f)).halt || halt;
  }
  if (halt) detail::halt_run();
}

}  // namespace ctxpool::diagnostics
