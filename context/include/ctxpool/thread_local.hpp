// Thread-local slots that a pool wipes after every task, and watches on plain
// `thread_local` variables.
//
// `thread_local_var<T>` is the C++ counterpart of an attribute of Python's
// `threading.local`: each thread sees its own value. On a pool, threads are
// reused, so a value one task leaves behind would be seen by the next task on
// that thread; `lifetime::task` slots (the default) are therefore wiped after
// every pool task. `lifetime::thread` slots are deliberate per-thread caches (a
// connection per worker) that survive across tasks. `local_stack<T>` is a
// per-thread stack in the manner of werkzeug's `LocalStack`. The wipe costs
// what the task wrote: each thread lists the slots written during the task.
//
// Pools mark each task with a `slot_wipe_scope`; a hand-written worker loop can
// do the same. While a residue observer is installed (diagnostic mode), each
// slot also remembers whether the running task has touched it yet, so that a
// task's first read and the values it leaves behind can be reported (see
// <ctxpool/hooks.hpp>); without one, that costs one thread-local load per
// access. Plain `thread_local` variables the user cannot change to
// `thread_local_var` can be watched with `watch_thread_local`: the pool restores
// them after each task.
//
// @par Thread safety
// Each thread has its own value in every slot, so the member functions of
// `thread_local_var` and `local_stack` may be called concurrently from any
// threads. `watch_thread_local` and destroying the watch it returns are
// thread-safe.
//
// @par Lifetime
// A thread's values are destroyed when they are wiped, reset, or at the
// latest when the thread exits. A `thread_local_var` may be destroyed while
// threads still hold values for it; those are destroyed when their threads
// exit. The references `value()` and `top()` return are valid until the slot
// is next written, reset or wiped on that thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <source_location>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include <ctxpool/detail/config.hpp>
#include <ctxpool/errors.hpp>
#include <ctxpool/hooks.hpp>

namespace ctxpool {
namespace detail {

/// What every thread's slot for one variable shares with the variable.
struct slot_info {
  std::string name;
  std::string type_name;
  lifetime life;
  std::uint32_t index;  // dense: position in each thread's slot table
  bool stack;           // a local_stack: every first access counts as a read
};

std::shared_ptr<const slot_info> make_slot_info(std::string name, const std::type_info& type,
                                                lifetime life, bool stack);

/// This thread's task access clock, for diagnostics. `current` is the tick
/// of the innermost task scope (0 when no observer was installed when it
/// began, or outside any scope); `last` the last tick handed out on this
/// thread. A slot whose `access_tick` is below `current` has not been touched
/// by the running task yet. Trivially destructible and constant-initialised,
/// so the check costs one thread-pointer load when diagnostics is off.
struct access_clock {
  std::uint64_t current;
  std::uint64_t last;
};
inline constinit thread_local access_clock task_clock{0, 0};

/// `task_clock`, for header code (see CTXPOOL_TLS_ACCESSOR).
CTXPOOL_TLS_ACCESSOR access_clock& this_thread_clock() noexcept {
  CTXPOOL_TLS_FENCE();
  return task_clock;
}

/// One thread's storage for one variable.
class slot_base {
 public:
  explicit slot_base(std::shared_ptr<const slot_info> info) noexcept : info_(std::move(info)) {}
  virtual ~slot_base() = default;
  slot_base(const slot_base&) = delete;
  slot_base& operator=(const slot_base&) = delete;

  [[nodiscard]] virtual bool holds_value() const noexcept = 0;
  virtual void clear() noexcept = 0;
  [[nodiscard]] const slot_info& info() const noexcept { return *info_; }

  // Bookkeeping for the wipe and for diagnostics (written by thread_local.cpp).
  std::source_location write_site{};  // where the value was last written on this thread
  std::uint64_t access_tick = 0;      // task_clock tick of the last tracked access
  std::uint64_t outer_tick = 0;       // access_tick before the running task's first access
  bool listed = false;                // in this thread's written-during-task list

 private:
  std::shared_ptr<const slot_info> info_;
};

/// This thread's slot for `index`, or nullptr if it has none yet.
[[nodiscard]] slot_base* find_slot(std::uint32_t index) noexcept;
/// Stores a new slot for this thread and returns it.
slot_base* install_slot(std::unique_ptr<slot_base> slot);
/// Lists the slot for the wipe, remembers the write site and, in diagnostic
/// mode, marks the running task's first access.
void note_write(slot_base& slot, std::source_location where);
/// Diagnostic mode: the running task's first access to `slot` was a read.
void note_read_first(slot_base& slot, std::source_location where) noexcept;

/// A slot holding at most one T.
template <class T>
class value_slot final : public slot_base {
 public:
  using slot_base::slot_base;
  // noexcept like the base's: a T whose destructor throws terminates here, as
  // in the wipe, instead of making the override's exception spec laxer (an
  // error under clang).
  ~value_slot() noexcept override = default;
  [[nodiscard]] bool holds_value() const noexcept override { return value.has_value(); }
  void clear() noexcept override { value.reset(); }
  std::optional<T> value;
};

/// A slot holding a stack of T.
template <class T>
class stack_slot final : public slot_base {
 public:
  using slot_base::slot_base;
  ~stack_slot() noexcept override = default;  // see value_slot
  [[nodiscard]] bool holds_value() const noexcept override { return !items.empty(); }
  void clear() noexcept override {
    // Swap out first so element destructors that touch the stack see it empty.
    std::vector<T> doomed;
    doomed.swap(items);
  }
  std::vector<T> items;
};

/// Common machinery of thread_local_var and local_stack.
template <class Slot>
class slot_handle {
 protected:
  slot_handle(std::string name, const std::type_info& type, lifetime life, bool stack)
      : info_(make_slot_info(std::move(name), type, life, stack)) {}

  /// This thread's slot for a read; in diagnostic mode, also notes whether
  /// this is the running task's first access to it.
  [[nodiscard]] Slot* slot_for_read(std::source_location where) const noexcept {
    auto* slot = static_cast<Slot*>(find_slot(info_->index));
    if (CTXPOOL_UNLIKELY(this_thread_clock().current != 0)) slot = track_read(slot, where);
    return slot;
  }

  /// Diagnostic mode only: marks the task's access (creating an empty slot to
  /// carry the mark) and reports it when it is the task's first.
  [[nodiscard]] Slot* track_read(Slot* slot, std::source_location where) const noexcept {
    if (info_->life != lifetime::task) return slot;
    if (slot == nullptr) {
      try {
        slot = static_cast<Slot*>(install_slot(std::make_unique<Slot>(info_)));
      } catch (...) {
        return nullptr;  // out of memory: the access goes untracked
      }
    }
    if (const std::uint64_t now = this_thread_clock().current; slot->access_tick < now) {
      slot->outer_tick = slot->access_tick;
      slot->access_tick = now;
      note_read_first(*slot, where);
    }
    return slot;
  }

  /// This thread's slot for a write, created on first use.
  [[nodiscard]] Slot& slot_for_write(std::source_location where) const {
    auto* slot = static_cast<Slot*>(find_slot(info_->index));
    if (slot == nullptr) slot = static_cast<Slot*>(install_slot(std::make_unique<Slot>(info_)));
    note_write(*slot, where);
    return *slot;
  }

  [[nodiscard]] Slot* existing_slot() const noexcept {
    return static_cast<Slot*>(find_slot(info_->index));
  }

 public:
  /// The name given at construction, used in reports.
  [[nodiscard]] const std::string& name() const noexcept { return info_->name; }
  /// Whether values are wiped after each task or kept for the thread's life.
  [[nodiscard]] lifetime life() const noexcept { return info_->life; }

 private:
  std::shared_ptr<const slot_info> info_;
};

[[noreturn]] void throw_no_thread_value(const std::string& name);

/// The names of the plain `thread_local`s currently registered with
/// `watch_thread_local` (restored after each task), for diagnostics.
[[nodiscard]] std::vector<std::string> watched_thread_local_names();

}  // namespace detail

/// A variable with one value per thread, wiped after each pool task unless it
/// is declared `lifetime::thread`.
///
/// Every read takes a defaulted `std::source_location` so that diagnostics can
/// name the read site of a stale read; callers never pass it.
template <class T>
class thread_local_var : public detail::slot_handle<detail::value_slot<T>> {
  using base = detail::slot_handle<detail::value_slot<T>>;

 public:
  using value_type = T;

  /// A slot named `name` (copied) with the given lifetime.
  explicit thread_local_var(std::string name, lifetime life = lifetime::task)
      : base(std::move(name), typeid(T), life, /*stack=*/false) {}

  /// Whether this thread holds a value.
  [[nodiscard]] bool has_value(std::source_location where = std::source_location::current()) const {
    auto* slot = this->slot_for_read(where);
    return slot != nullptr && slot->value.has_value();
  }

  /// This thread's value.
  /// @throws lookup_error if this thread holds none.
  [[nodiscard]] T& value(std::source_location where = std::source_location::current()) const {
    auto* slot = this->slot_for_read(where);
    if (slot == nullptr || !slot->value) detail::throw_no_thread_value(this->name());
    return *slot->value;
  }

  /// This thread's value, or `fallback` if it holds none.
  [[nodiscard]] T value_or(T fallback,
                           std::source_location where = std::source_location::current()) const {
    auto* slot = this->slot_for_read(where);
    return slot != nullptr && slot->value ? *slot->value : std::move(fallback);
  }

  /// Stores `value` for this thread.
  void set(T value, std::source_location where = std::source_location::current()) {
    this->slot_for_write(where).value = std::move(value);
  }

  /// Constructs this thread's value in place and returns it.
  template <class... Args>
  T& emplace(Args&&... args) {
    return this->slot_for_write(std::source_location::current())
        .value.emplace(std::forward<Args>(args)...);
  }

  /// Destroys this thread's value, if any. For diagnostics this is a write:
  /// a task that resets before reading does not read stale state.
  void reset() noexcept {
    if (auto* slot = this->existing_slot()) {
      slot->value.reset();
      const std::uint64_t now = detail::this_thread_clock().current;
      if (now != 0 && slot->access_tick < now) {
        slot->outer_tick = slot->access_tick;
        slot->access_tick = now;
      }
    }
  }
};

/// A per-thread stack (werkzeug's `LocalStack`), wiped after each pool task
/// unless declared `lifetime::thread`.
template <class T>
class local_stack : public detail::slot_handle<detail::stack_slot<T>> {
  using base = detail::slot_handle<detail::stack_slot<T>>;

 public:
  using value_type = T;

  explicit local_stack(std::string name, lifetime life = lifetime::task)
      : base(std::move(name), typeid(T), life, /*stack=*/true) {}

  /// Pushes `value` on this thread's stack.
  void push(T value, std::source_location where = std::source_location::current()) {
    this->slot_for_write(where).items.push_back(std::move(value));
  }

  /// Pops and returns the top of this thread's stack; empty if there is none.
  std::optional<T> pop(std::source_location where = std::source_location::current()) {
    auto* slot = this->slot_for_read(where);
    if (slot == nullptr || slot->items.empty()) return std::nullopt;
    std::optional<T> top(std::move(slot->items.back()));
    slot->items.pop_back();
    return top;
  }

  /// The top of this thread's stack, or nullptr if it is empty.
  [[nodiscard]] T* top(std::source_location where = std::source_location::current()) const {
    auto* slot = this->slot_for_read(where);
    return slot == nullptr || slot->items.empty() ? nullptr : &slot->items.back();
  }

  /// How many values this thread's stack holds.
  [[nodiscard]] std::size_t size(
      std::source_location where = std::source_location::current()) const {
    auto* slot = this->slot_for_read(where);
    return slot == nullptr ? 0 : slot->items.size();
  }

  [[nodiscard]] bool empty(std::source_location where = std::source_location::current()) const {
    return size(where) == 0;
  }
};

/// Marks the calling thread as running one task, for `lifetime::task` slots:
/// when the scope ends, every such slot written since it began is wiped and
/// every watched `thread_local` is restored.
///
/// Pools do this around each task; a hand-written worker loop can too. Scopes
/// nest (a task run inline inside another): an inner scope wipes what was first
/// written inside it, and watched variables are restored by the outermost.
class slot_wipe_scope {
 public:
  slot_wipe_scope() noexcept;
  ~slot_wipe_scope();
  slot_wipe_scope(const slot_wipe_scope&) = delete;
  slot_wipe_scope& operator=(const slot_wipe_scope&) = delete;

 private:
  std::size_t mark_;
  std::uint64_t outer_tick_;  // the enclosing scope's access tick, restored at the end
};

/// The name `slot_wipe_scope` had before 0.3, when it was too close to
/// `diagnostics::task_scope` (which does more: context, wipe and detection).
using task_slot_scope [[deprecated("renamed ctxpool::slot_wipe_scope")]] = slot_wipe_scope;

namespace detail {
/// Hides the calling thread's `lifetime::task` values for the scope's life
/// and puts them back at its end: for a thread that runs other tasks' work
/// while it waits (task_group::wait), so that the work sees the thread as a
/// worker would, clean, and the waiter's own values survive it. What the
/// hidden slots are given meanwhile must be wiped by task scopes inside
/// (each task's own); the scope discards any that is left.
class slot_shelf {
 public:
  slot_shelf();
  ~slot_shelf();
  slot_shelf(const slot_shelf&) = delete;
  slot_shelf& operator=(const slot_shelf&) = delete;

 private:
  std::vector<std::unique_ptr<slot_base>> shelved_;  // by slot index; null: not hidden
};
}  // namespace detail

/// The registration of a watched `thread_local`; destroying it stops the watch.
class thread_local_watch {
 public:
  thread_local_watch() noexcept = default;
  thread_local_watch(thread_local_watch&& other) noexcept : id_(std::exchange(other.id_, 0)) {}
  thread_local_watch& operator=(thread_local_watch&&) noexcept;
  ~thread_local_watch();

  /// Registers a check run on each pool thread after each task; it returns
  /// whether the variable had been changed, restoring it if so. Prefer
  /// `watch_thread_local`, which builds the check for you.
  thread_local_watch(std::string name, const std::type_info& type,
                     std::function<bool()> restore_if_changed);

 private:
  std::uint64_t id_ = 0;
};

/// Watches a plain `thread_local` that cannot become a `thread_local_var`:
/// after each pool task, if this thread's instance differs from `pristine` it
/// is reset to `pristine` (and, in diagnostic mode, reported as residue).
///
/// `instance` returns the calling thread's variable, e.g.
/// `[]() -> std::string& { return legacy_token; }`; T must be copy-assignable
/// and equality-comparable.
template <class Instance, class T = std::remove_cvref_t<std::invoke_result_t<Instance&>>>
[[nodiscard]] thread_local_watch watch_thread_local(std::string name, Instance instance,
                                                    T pristine = T{}) {
  return thread_local_watch(std::move(name), typeid(T),
                            [instance = std::move(instance), pristine = std::move(pristine)] {
                              T& current = instance();
                              if (current == pristine) return false;
                              current = pristine;
                              return true;
                            });
}

}  // namespace ctxpool
