// Context variables with Python `contextvars` semantics for C++.
//
// A `context` is a mutable box around an immutable map from variables to
// values. Each thread has a current context; `context_var<T>::get()` reads it,
// `set()` replaces the map in the current box and returns a single-use `token`
// that `reset()` uses to restore the previous value. `copy_context()` takes an
// O(1) snapshot; `ctx.run(f)` enters a context for one call. A thread pool built
// on this (see <ctxpool/executor.hpp>) runs each task in a fresh copy of the
// submitter's snapshot, so a value set by a request handler follows its work
// across threads and never leaks into another request's.
//
// @par Thread safety
// `context_var` objects may be shared freely: `get`, `set` and `reset` act on
// the calling thread's current context only. A `context` may be entered by one
// thread at a time (`run` throws `context_error` otherwise); copies of a
// `context` handle may be made, destroyed and run from any thread. Reading a
// context as a mapping (`find`, `contains`, `size`) is safe concurrently with
// other reads, and not concurrently with a thread that has it entered and sets
// variables in it, just as for a standard container.
//
// @par Lifetime
// Values are owned by the contexts (and tokens) that hold them: a value is
// destroyed when the last context or token holding it is destroyed, on the
// thread that drops that reference. A variable must outlive the tokens it
// returns. `get()` returns by value, so nothing a later `set` does can leave a
// dangling reference; hold a large value as `std::shared_ptr<const Big>`.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include <ctxpool/detail/carried.hpp>
#include <ctxpool/detail/config.hpp>
#include <ctxpool/detail/map.hpp>
#include <ctxpool/detail/snapshot.hpp>
#include <ctxpool/detail/state.hpp>
#include <ctxpool/errors.hpp>

namespace ctxpool {

template <class T>
class context_var;
class context;

namespace detail {

std::uint32_t new_var_id();

/// The part of a token that does not depend on T.
class token_state {
 public:
  token_state() noexcept = default;
  token_state(std::uint32_t var_id, std::uint64_t lineage, const value_base* old) noexcept
      : var_id_(var_id), lineage_(lineage), old_(old), used_(false) {}
  token_state(token_state&& other) noexcept
      : var_id_(other.var_id_),
        lineage_(other.lineage_),
        old_(std::exchange(other.old_, nullptr)),
        used_(std::exchange(other.used_, true)) {}
  token_state& operator=(token_state&& other) noexcept {
    if (this != &other) {
      if (old_ != nullptr) old_->release();
      var_id_ = other.var_id_;
      lineage_ = other.lineage_;
      old_ = std::exchange(other.old_, nullptr);
      used_ = std::exchange(other.used_, true);
    }
    return *this;
  }
  ~token_state() {
    if (old_ != nullptr) old_->release();
  }

  std::uint32_t var_id_ = 0;
  std::uint64_t lineage_ = 0;
  const value_base* old_ = nullptr;  // owned reference; null: the variable was unset
  bool used_ = true;                 // a default-constructed or moved-from token is spent
};

/// Replaces the current box's map with one holding `value` (whose reference
/// is adopted) and returns what a token needs to undo it.
token_state set_value(const value_base* value, std::string_view var_name,
                      const std::type_info& type);
void reset_value(std::uint32_t var_id, std::string_view var_name, token_state& token);

/// get() slow path: looks the variable up, fills the cache, and throws
/// lookup_error when there is neither a value nor a default.
const void* lookup_or_throw(std::uint32_t var_id, const void* default_value,
                            std::string_view var_name);
/// get_or() slow path: the set value (cached) or nullptr.
const void* lookup_set_value(std::uint32_t var_id) noexcept;

[[noreturn]] void throw_missing_in_context(std::string_view var_name);

}  // namespace detail

/// The receipt of one `context_var::set`, used to undo it with `reset`.
///
/// Single use, and only valid for the variable and the context that made it.
/// Move-only, so that "used once" is a property of one object.
template <class T>
class token {
 public:
  token(token&&) noexcept = default;
  token& operator=(token&&) noexcept = default;

  /// The variable whose `set` produced this token.
  [[nodiscard]] const context_var<T>& var() const noexcept { return *var_; }

  /// The value the variable had before the `set`; empty when it had none
  /// (Python's `Token.MISSING`).
  [[nodiscard]] std::optional<T> old_value() const {
    if (state_.old_ == nullptr) return std::nullopt;
    return *static_cast<const T*>(state_.old_->data());
  }

  /// Whether `reset` has consumed this token.
  [[nodiscard]] bool used() const noexcept { return state_.used_; }

 private:
  friend class context_var<T>;
  token(const context_var<T>& var, detail::token_state state) noexcept
      : var_(&var), state_(std::move(state)) {}

  const context_var<T>* var_;
  detail::token_state state_;
};

/// A context variable: a named key whose value depends on the current context.
///
/// Declare them at namespace scope, like Python's `ContextVar`; the name is
/// copied and used in error messages and diagnostics.
///
/// @par Thread safety
/// All member functions may be called concurrently; they act on the calling
/// thread's current context.
template <class T>
class context_var {
  static_assert(
      std::is_copy_constructible_v<T>,
      "get() returns by value; hold move-only or large values as std::shared_ptr<const T>");

 public:
  using value_type = T;

  /// A variable with no default: `get()` throws `lookup_error` until it is set.
  explicit context_var(std::string name) : name_(std::move(name)), id_(detail::new_var_id()) {}

  /// A variable whose `get()` returns `default_value` where it is not set.
  context_var(std::string name, T default_value)
      : name_(std::move(name)), id_(detail::new_var_id()), default_(std::move(default_value)) {}

  context_var(const context_var&) = delete;
  context_var& operator=(const context_var&) = delete;

  /// The name given at construction.
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

  /// The default given at construction, if any.
  [[nodiscard]] const std::optional<T>& default_value() const noexcept { return default_; }

  /// The value in the current context, else the default.
  /// @throws lookup_error when there is neither.
  [[nodiscard]] T get() const {
    const detail::thread_state& state = detail::this_thread_state();
    const detail::get_cache_entry& entry = state.cache[id_ & (detail::get_cache_size - 1)];
    if (CTXPOOL_LIKELY(entry.tag == detail::cache_tag(state, id_))) {
      return *static_cast<const T*>(entry.value);
    }
    return *static_cast<const T*>(
        detail::lookup_or_throw(id_, default_ ? &*default_ : nullptr, name_));
  }

  /// The value in the current context, else `fallback` (which, as in Python,
  /// takes precedence over the variable's default). Never throws a lookup_error.
  [[nodiscard]] T get_or(T fallback) const {
    const detail::thread_state& state = detail::this_thread_state();
    const detail::get_cache_entry& entry = state.cache[id_ & (detail::get_cache_size - 1)];
    // A cached default (from get()) is not a set value: the fallback wins.
    if (CTXPOOL_LIKELY(entry.tag == detail::cache_tag(state, id_)) &&
        (!default_ || entry.value != &*default_)) {
      return *static_cast<const T*>(entry.value);
    }
    if (const void* value = detail::lookup_set_value(id_)) return *static_cast<const T*>(value);
    return fallback;
  }

  /// Sets the value in the current context; only this context sees it.
  /// @returns a token that `reset` takes to restore the previous value.
  token<T> set(T value) {
    auto* holder = new detail::value_holder<T>(id_, std::move(value));
    return token<T>(*this, detail::set_value(holder, name_, typeid(T)));
  }

  /// Restores the value the variable had before the `set` that made `tok`,
  /// or removes it again if it had none.
  /// @throws token_error if `tok` was used already, belongs to another
  ///         variable, or was made in another context.
  void reset(token<T>& tok) { detail::reset_value(id_, name_, tok.state_); }

  /// The id that keys this variable in context maps (unique in the process).
  [[nodiscard]] std::uint32_t id() const noexcept { return id_; }

 private:
  std::string name_;
  std::uint32_t id_;
  std::optional<T> default_;
};

/// A handle to a context: copies refer to the same context (as Asio executors
/// refer to the same execution context); `copy_context()` makes a new one.
class context {
 public:
  /// A new, empty context (Python's `contextvars.Context()`).
  context();

  context(const context& other) noexcept : box_(other.box_) {
    if (box_ != nullptr) box_->add_ref();
  }
  /// Leaves `other` empty: only assignment and destruction are valid on it.
  context(context&& other) noexcept : box_(std::exchange(other.box_, nullptr)) {}
  context& operator=(context other) noexcept {
    std::swap(box_, other.box_);
    return *this;
  }
  ~context() {
    if (box_ != nullptr) box_->release();
  }

  /// Enters this context, calls `f(args...)`, and leaves it again, also when
  /// `f` throws. `set`s made inside stay in this context and are seen by a
  /// later `run`. Contexts nest: a different context may be run inside.
  /// @throws context_error if this context is already entered, on any thread.
  template <class F, class... Args>
  std::invoke_result_t<F, Args...> run(F&& f, Args&&... args) const {
    CTXPOOL_ASSERT(box_ != nullptr, "context::run on a moved-from context");
    detail::enter_guard guard(*box_);
    return std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// Whether `var` has a value in this context (defaults do not count).
  template <class T>
  [[nodiscard]] bool contains(const context_var<T>& var) const noexcept {
    return detail::map_find(root(), var.id()) != nullptr;
  }

  /// The value of `var` in this context, if it is set there.
  template <class T>
  [[nodiscard]] std::optional<T> find(const context_var<T>& var) const {
    const detail::value_base* value = detail::map_find(root(), var.id());
    if (value == nullptr) return std::nullopt;
    return *static_cast<const T*>(value->data());
  }

  /// The value of `var` in this context (Python's `ctx[var]`).
  /// @throws lookup_error if it is not set there; defaults do not count.
  template <class T>
  [[nodiscard]] T get(const context_var<T>& var) const {
    const detail::value_base* value = detail::map_find(root(), var.id());
    if (value == nullptr) detail::throw_missing_in_context(var.name());
    return *static_cast<const T*>(value->data());
  }

  /// How many variables are set in this context.
  [[nodiscard]] std::size_t size() const noexcept { return detail::map_size(root()); }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }

  /// Whether this context is the calling thread's current one (entered here
  /// and not shadowed by another context entered inside it).
  [[nodiscard]] bool is_current() const noexcept {
    return box_ != nullptr && detail::this_thread_state().current == box_;
  }

  /// Whether some thread has this context entered right now.
  [[nodiscard]] bool entered() const noexcept {
    return box_ != nullptr && box_->entered.load(std::memory_order_acquire);
  }

  /// Identity: true when both handles refer to the same context.
  friend bool operator==(const context& a, const context& b) noexcept { return a.box_ == b.box_; }

 private:
  friend context copy_context();
  friend class context_scope;
  explicit context(detail::context_box* adopted) noexcept : box_(adopted) {}
  [[nodiscard]] const detail::map_node* root() const noexcept {
    return box_ == nullptr ? nullptr : box_->root;
  }

  detail::context_box* box_;
};

/// A new context holding a snapshot of the current one: O(1), values are
/// shared, not copied. Later `set`s in either are invisible to the other.
[[nodiscard]] context copy_context();

/// Enters a context for the enclosing block (RAII form of `context::run`).
/// @throws context_error from the constructor if the context is already entered.
class context_scope {
 public:
  explicit context_scope(context ctx) : ctx_(std::move(ctx)), guard_(checked(ctx_)) {}
  context_scope(const context_scope&) = delete;
  context_scope& operator=(const context_scope&) = delete;

 private:
  static detail::context_box& checked(const context& ctx) {
    CTXPOOL_ASSERT(ctx.box_ != nullptr, "context_scope on a moved-from context");
    return *ctx.box_;
  }
  context ctx_;  // keeps the box alive while it is entered
  detail::enter_guard guard_;
};

/// Sets a variable for the enclosing block and restores the previous value on
/// exit, on every path (RAII form of `set` + `reset`).
///
/// Destroy it in the context it was made in (the natural thing for a block);
/// otherwise the process aborts with a message, since a destructor cannot throw.
template <class T>
class set_scope {
 public:
  template <class U>
  set_scope(context_var<T>& var, U&& value)
      : var_(var), token_(var.set(T(std::forward<U>(value)))) {}
  ~set_scope() {
    try {
      var_.reset(token_);
    } catch (const token_error&) {
      CTXPOOL_ASSERT(false, "set_scope destroyed outside the context it was created in");
    }
  }
  set_scope(const set_scope&) = delete;
  set_scope& operator=(const set_scope&) = delete;

 private:
  context_var<T>& var_;
  token<T> token_;
};

template <class T, class U>
set_scope(context_var<T>&, U&&) -> set_scope<T>;

}  // namespace ctxpool
