// Plain thread_locals that travel with the context, for code that cannot be changed.
//
// A library that keeps its current request, tenant or locale in a plain
// `thread_local` loses it when work moves to a pool, and leaves it behind on
// the worker for the next task. Registering the variable once makes it travel
// as a context variable does (the model of Alibaba's TransmittableThreadLocal
// and Kotlin's `ThreadLocal.asContextElement()`):
//
//   thread_local std::string current_tenant;          // legacy code, unchanged
//   ctxpool::carry_thread_local("current_tenant",
//                               []() -> std::string& { return current_tenant; });
//
// - its value is captured with every context snapshot: at `submit`, `post`,
//   `asio::post`, a strand's dispatch, `bind_context`, `copy_context()`, and
//   when a coroutine suspends (so a coroutine's change to it in one step is
//   seen by its next step, on whatever worker that runs);
// - entering a context (a pool task, a coroutine step, `context::run`)
//   installs the captured value into the thread's variable, and leaving puts
//   back the value the thread had before: a task never sees another task's
//   value, and a worker's own value survives the tasks it runs;
// - a context that captured no value for it (one made before the
//   registration, or `context()`) installs the *empty* value: `T{}` unless
//   one is given;
// - residue diagnostics (CTXPOOL_DIAGNOSTICS=residue) knows the variable by
//   the name given, as the name of the `thread_local` itself (qualified or
//   not, as for `watch_thread_local`), and does not report the value a task
//   leaves in it, since that value is put back when the task ends.
//
// Cost: nothing beyond one relaxed load and branch per snapshot and per
// context entry while no variable is registered; per registered variable,
// one value allocation and one map update per snapshot, and a read, a save
// and two writes per context entered (bench/context_bench.cpp measures it).
//
// @par Thread safety
// `carry_thread_local` may be called from any thread, concurrently with
// running tasks; a snapshot taken before it returns does not carry the new
// variable. The accessors are called on the thread whose variable they reach,
// inside snapshots and context entries: they must not throw (the process
// terminates if they do, as snapshots are taken in noexcept paths), and
// neither may copying or assigning a `T`.
//
// @par Lifetime
// A registration is permanent; it needs nothing of the caller afterwards (the
// accessors are captureless, called through function pointers). Captured
// values are owned by the context maps that hold them, like context variables'
// values, and `context::size()` counts them.
#pragma once

#include <concepts>
#include <string_view>
#include <type_traits>
#include <utility>

#include <ctxpool/context.hpp>
#include <ctxpool/detail/carried.hpp>

namespace ctxpool {

namespace detail {

template <class F>
concept captureless = std::is_empty_v<F> && std::default_initializable<F>;

}  // namespace detail

/// Carries the thread_local that `access()` returns (a `T&` to the calling
/// thread's variable) with every context snapshot, and installs it on entry.
///
/// `name` is the variable's name (see residue diagnostics above). `access`
/// must be a captureless lambda (or another empty, default-constructible
/// function object): it is called on whichever thread runs.
/// @param empty the value installed where a context captured none.
/// @throws std::length_error past 64 registered variables.
template <class Access, class T = std::remove_cvref_t<std::invoke_result_t<Access&>>>
  requires detail::captureless<Access> &&
           std::is_lvalue_reference_v<std::invoke_result_t<Access&>> &&
           std::copy_constructible<T> && std::is_copy_assignable_v<T>
void carry_thread_local(std::string_view name, Access /*access*/,
                        std::type_identity_t<T> empty = T{}) {
  const std::uint32_t id = detail::new_var_id();
  detail::register_carried(
      detail::carried_entry{name, id, new detail::value_holder<T>(id, std::move(empty)),
                            [](std::uint32_t var_id) -> const detail::value_base* {
                              return new detail::value_holder<T>(var_id, Access{}());
                            },
                            [](const void* value) { Access{}() = *static_cast<const T*>(value); }});
}

/// Carries a thread-local value reached through a getter and a setter (a
/// library's `current_locale()` / `set_current_locale(v)`), as above.
///
/// `name` names the variable behind them, if it is a `thread_local` (see
/// residue diagnostics above). `get()` returns the calling thread's value;
/// `set(v)` stores one. Both must be captureless lambdas or other empty
/// function objects.
/// @param empty the value installed where a context captured none.
/// @throws std::length_error past 64 registered variables.
template <class Get, class Set, class T = std::remove_cvref_t<std::invoke_result_t<Get&>>>
  requires detail::captureless<Get> && detail::captureless<Set> && std::invocable<Set&, const T&> &&
           std::copy_constructible<T>
void carry_thread_local(std::string_view name, Get /*get*/, Set /*set*/, T empty = T{}) {
  const std::uint32_t id = detail::new_var_id();
  detail::register_carried(
      detail::carried_entry{name, id, new detail::value_holder<T>(id, std::move(empty)),
                            [](std::uint32_t var_id) -> const detail::value_base* {
                              return new detail::value_holder<T>(var_id, Get{}());
                            },
                            [](const void* value) { Set{}(*static_cast<const T*>(value)); }});
}

}  // namespace ctxpool
