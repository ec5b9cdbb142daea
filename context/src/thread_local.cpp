// Per-thread slot tables, the end-of-task wipe, and watched thread_locals.
#include <ctxpool/thread_local.hpp>

#include <ctxpool/detail/carried.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>

#include "observer.hpp"

namespace ctxpool {
namespace detail {
namespace {

constinit std::atomic<std::uint32_t> next_slot_index{0};

struct slot_table {
  std::vector<std::unique_ptr<slot_base>> slots;  // by slot_info::index
  std::vector<slot_base*> written;                // lifetime::task slots written inside task scopes
  unsigned depth = 0;                             // nesting of slot_wipe_scope

  ~slot_table() {
    written.clear();
    // Values' destructors may touch other slots of this thread: destroy them
    // from a detached list, newest variable first.
    std::vector<std::unique_ptr<slot_base>> doomed;
    doomed.swap(slots);
    while (!doomed.empty()) doomed.pop_back();
  }
};

slot_table& table() {
  thread_local slot_table instance;
  return instance;
}

slot_view view_of(const slot_base& slot, unsigned scope_depth = 0) noexcept {
  const slot_info& info = slot.info();
  return {info.name, info.type_name, info.life, info.index, info.stack, scope_depth};
}

// A value whose destructor throws during the wipe terminates the process
// (clear() is noexcept: nothing could carry the exception on after the task).
// A terminate handler, chained in front of the one installed before it, names
// the slot being wiped, so the message says which variable's value threw.
constinit thread_local const slot_base* slot_being_wiped = nullptr;
std::terminate_handler terminate_before_wipe = nullptr;

void name_wiped_slot_then_terminate() {
  if (const slot_base* slot = slot_being_wiped) {
    const slot_info& info = slot->info();
    std::fprintf(stderr,
                 "ctxpool: the value of thread-local slot '%s' (%s) threw from its destructor "
                 "while being wiped after a task; destructors must not throw. Terminating.\n",
                 info.name.c_str(), info.type_name.c_str());
  }
  if (terminate_before_wipe != nullptr) terminate_before_wipe();
  std::abort();
}

void name_slots_on_terminate() noexcept {
  static const bool installed = [] {
    terminate_before_wipe = std::set_terminate(&name_wiped_slot_then_terminate);
    return true;
  }();
  (void)installed;
}

void wipe_from(slot_table& t, std::size_t mark) noexcept {
  // Only scopes that began with an observer installed report what they leave.
  residue_observer* obs = task_clock.current != 0 ? observer() : nullptr;
  // Index loop: a value's destructor may write slots, appending to `written`.
  for (std::size_t i = mark; i < t.written.size(); ++i) {
    slot_base* slot = t.written[i];
    slot->listed = false;
    // First written in this scope: for a task this one was nested in (run
    // inline), the slot is as untouched as it was before this task began.
    slot->access_tick = slot->outer_tick;
    if (slot->holds_value()) {
      // On an ordinary pool this value would stay for the next task here.
      if (obs != nullptr) obs->on_left_dirty(view_of(*slot, t.depth), slot->write_site);
      name_slots_on_terminate();
      slot_being_wiped = slot;
      slot->clear();
      slot_being_wiped = nullptr;
    }
  }
  t.written.resize(mark);
}

// ---- watched thread_locals --------------------------------------------------

struct watch_entry {
  std::uint64_t id;
  std::string name;
  std::string type_name;
  std::function<bool()> restore_if_changed;
};

struct watch_registry {
  std::mutex mutex;
  std::vector<std::shared_ptr<const watch_entry>> entries;
  std::atomic<std::uint64_t> version{0};
  std::uint64_t next_id = 1;
};

watch_registry& watches() {
  static watch_registry registry;  // leaked-order safe: only ever grows/shrinks under its mutex
  return registry;
}

constinit std::atomic<bool> any_watch_ever{false};

void restore_watched() noexcept {
  if (!any_watch_ever.load(std::memory_order_relaxed)) return;
  struct cache {
    std::uint64_t version = ~std::uint64_t{0};
    std::vector<std::shared_ptr<const watch_entry>> entries;
  };
  thread_local cache local;
  watch_registry& registry = watches();
  if (const std::uint64_t now = registry.version.load(std::memory_order_acquire);
      now != local.version) {
    std::lock_guard lock(registry.mutex);
    local.entries = registry.entries;
    local.version = registry.version.load(std::memory_order_relaxed);
  }
  residue_observer* obs = observer();
  for (const auto& entry : local.entries) {
    bool changed = false;
    try {
      changed = entry->restore_if_changed();
    } catch (...) {
      CTXPOOL_ASSERT(false, "a watched thread_local's comparison or assignment threw");
    }
    if (changed && obs != nullptr) {
      obs->on_watched_residue({entry->name, entry->type_name, lifetime::task});
    }
  }
}

}  // namespace

std::shared_ptr<const slot_info> make_slot_info(std::string name, const std::type_info& type,
                                                lifetime life, bool stack) {
  const std::uint32_t index = next_slot_index.fetch_add(1, std::memory_order_relaxed);
  return std::make_shared<const slot_info>(
      slot_info{std::move(name), demangle(type), life, index, stack});
}

slot_base* find_slot(std::uint32_t index) noexcept {
  slot_table& t = table();
  return index < t.slots.size() ? t.slots[index].get() : nullptr;
}

slot_base* install_slot(std::unique_ptr<slot_base> slot) {
  slot_table& t = table();
  const std::uint32_t index = slot->info().index;
  if (index >= t.slots.size()) t.slots.resize(index + 1);
  t.slots[index] = std::move(slot);
  return t.slots[index].get();
}

void note_write(slot_base& slot, std::source_location where) {
  if (slot.info().life != lifetime::task) return;
  slot.write_site = where;
  slot_table& t = table();
  if (t.depth > 0 && !slot.listed) {
    t.written.push_back(&slot);
    slot.listed = true;
  }
  if (CTXPOOL_UNLIKELY(task_clock.current != 0) && slot.access_tick < task_clock.current) {
    slot.outer_tick = slot.access_tick;
    slot.access_tick = task_clock.current;
    // A value slot written first is clean; a push lands on what is there.
    if (slot.info().stack) note_read_first(slot, where);
  }
}

void note_read_first(slot_base& slot, std::source_location where) noexcept {
  if (residue_observer* obs = observer()) obs->on_read_first(view_of(slot, table().depth), where);
}

std::vector<std::string> watched_thread_local_names() {
  watch_registry& registry = watches();
  std::lock_guard lock(registry.mutex);
  std::vector<std::string> names;
  names.reserve(registry.entries.size());
  for (const auto& entry : registry.entries) names.push_back(entry->name);
  // Carried thread_locals are put back when a task ends, as watched ones are.
  for (std::string& name : carried_thread_local_names()) names.push_back(std::move(name));
  return names;
}

void throw_no_thread_value(const std::string& name) {
  throw lookup_error("thread_local_var '" + name +
                     "' has no value on this thread (values of lifetime::task variables are "
                     "wiped after each pool task; set it in the task that reads it)");
}

}  // namespace detail

slot_wipe_scope::slot_wipe_scope() noexcept {
  detail::slot_table& t = detail::table();
  mark_ = t.written.size();
  ++t.depth;
  outer_tick_ = detail::task_clock.current;
  // Ticks only grow, so a slot the enclosing task touched before this nested
  // one ran still counts as touched when the enclosing task resumes.
  if (CTXPOOL_UNLIKELY(detail::observer() != nullptr)) {
    detail::task_clock.current = ++detail::task_clock.last;
  }
}

slot_wipe_scope::~slot_wipe_scope() {
  detail::slot_table& t = detail::table();
  detail::wipe_from(t, mark_);
  const unsigned depth = t.depth--;
  if (depth == 1) detail::restore_watched();
  if (detail::task_clock.current != 0) {
    if (residue_observer* obs = detail::observer()) obs->on_task_slots_end(depth);
  }
  detail::task_clock.current = outer_tick_;
}

detail::slot_shelf::slot_shelf() {
  detail::slot_table& t = detail::table();
  for (std::size_t i = 0; i < t.slots.size(); ++i) {
    std::unique_ptr<detail::slot_base>& slot = t.slots[i];
    if (slot == nullptr || slot->info().life != lifetime::task || !slot->holds_value()) continue;
    if (shelved_.size() <= i) shelved_.resize(t.slots.size());
    // Pointers to the slot (the enclosing task's wipe list) stay valid: the
    // object only moves to the shelf.
    shelved_[i] = std::move(slot);
  }
}

detail::slot_shelf::~slot_shelf() {
  detail::slot_table& t = detail::table();
  for (std::size_t i = 0; i < shelved_.size(); ++i) {
    if (shelved_[i] == nullptr) continue;
    std::unique_ptr<detail::slot_base> stand_in = std::exchange(t.slots[i], std::move(shelved_[i]));
    // Listed stand-ins belong to a task scope still open: keep them alive
    // until it ends rather than leave it a dangling pointer (not expected:
    // the shelf lives inside the waiter's scope, the tasks' scopes inside it).
    CTXPOOL_ASSERT(stand_in == nullptr || !stand_in->listed,
                   "slot_shelf ended while a task scope inside it is still open");
  }
}

thread_local_watch::thread_local_watch(std::string name, const std::type_info& type,
                                       std::function<bool()> restore_if_changed) {
  auto& registry = detail::watches();
  std::lock_guard lock(registry.mutex);
  id_ = registry.next_id++;
  registry.entries.push_back(std::make_shared<const detail::watch_entry>(detail::watch_entry{
      id_, std::move(name), detail::demangle(type), std::move(restore_if_changed)}));
  registry.version.fetch_add(1, std::memory_order_release);
  detail::any_watch_ever.store(true, std::memory_order_relaxed);
}

thread_local_watch& thread_local_watch::operator=(thread_local_watch&& other) noexcept {
  if (this != &other) {
    thread_local_watch doomed(std::move(*this));
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

thread_local_watch::~thread_local_watch() {
  if (id_ == 0) return;
  auto& registry = detail::watches();
  std::lock_guard lock(registry.mutex);
  std::erase_if(registry.entries, [id = id_](const auto& entry) { return entry->id == id; });
  registry.version.fetch_add(1, std::memory_order_release);
}

}  // namespace ctxpool
