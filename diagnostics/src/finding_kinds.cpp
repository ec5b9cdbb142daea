// The finding kinds' table (finding_kinds.hpp): one row per kind, with its
// names, SARIF rule and report texts.
#include "finding_kinds.hpp"

#include <fmt/format.h>

#include "finding_text.hpp"

namespace ctxpool::diagnostics::detail {
namespace {

constexpr kind_info table[] = {
    {finding_kind::stale_read, "stale-read", "", true, "StaleThreadLocalRead",
     "Stale thread-local read",
     "A task reads a thread-local before writing it, and another task leaves a value in it. "
     "On a pool that does not wipe it, whenever the reader lands on a thread the other task "
     "used, it runs with that task's value (an auth token, a request id). Reported whatever "
     "threads the two ran on: the pair is the bug.",
     "error",
     [](const finding& f) {
       return fmt::format(
           "{} read {} before writing it, at {}, and {} leaves it dirty ({} task(s) did, "
           "written at {}): on a thread pool that does not wipe it, the reader gets that "
           "task's value whenever it lands on the same thread",
           describe_task(f.task), describe_variable(f), describe_site(f.site),
           describe_task(f.writer), f.left_dirty, describe_site(f.write_site));
     },
     [](const finding& f) {
       return fmt::format(
           "stale-read of {}\n"
           "  read before being written by {}\n"
           "    at {}\n"
           "    submitted at {}\n"
           "  left dirty by {} ({} task(s) had left it so from there by then)\n"
           "    written at {}\n"
           "    submitted at {}\n"
           "  Whatever threads these ran on: on a pool that does not wipe thread-locals the\n"
           "  reader gets the leaving task's value whenever it lands on a thread that task used.\n"
           "  Set it in every task that reads it, or pass it in a context_var. The value is not "
           "shown.\n",
           describe_variable(f), describe_task(f.task), describe_site(f.site),
           describe_site(f.task.submit_site), describe_task(f.writer), f.left_dirty,
           describe_site(f.write_site), describe_site(f.writer.submit_site));
     }},
    {finding_kind::read_across_suspension, "read-across-suspension", "", true,
     "ThreadLocalReadAcrossSuspension", "Thread-local read across a coroutine suspension",
     "A coroutine step read a thread-local that an earlier step of the same coroutine wrote "
     "before a co_await. The coroutine may resume on any worker, after other requests ran "
     "there; keep such state in a context_var, which follows the coroutine.",
     "error",
     [](const finding& f) {
       return fmt::format(
           "{} read {} first at {}, after a suspension, expecting what an earlier step of the "
           "same coroutine ({}) wrote at {}: a thread-local does not follow a coroutine across "
           "co_await; keep this state in a context_var",
           describe_task(f.task), describe_variable(f), describe_site(f.site),
           describe_task(f.writer), describe_site(f.write_site));
     },
     [](const finding& f) {
       return fmt::format(
           "read-across-suspension of {}\n"
           "  read first by {}, a later step of a coroutine (context lineage)\n"
           "    at {}\n"
           "  after an earlier step of it, {}, left it\n"
           "    written at {}\n"
           "    submitted at {}\n"
           "  A thread-local does not follow a coroutine across co_await: resumed on another\n"
           "  worker it reads nothing, or another request's value;\n"
           "  keep this state in a context_var. The value is not shown.\n",
           describe_variable(f), describe_task(f.task), describe_site(f.site),
           describe_task(f.writer), describe_site(f.write_site),
           describe_site(f.writer.submit_site));
     }},
    {finding_kind::residue, "residue", "", true, "ThreadLocalResidue", "Thread-local residue",
     "A task left a plain thread_local changed (where reads cannot be watched), or left a "
     "thread_local registered with watch_thread_local changed; the next task on that thread "
     "would see the change.",
     "error",
     [](const finding& f) {
       if (is_plain(f)) {
         return fmt::format(
             "{} left {} changed ({} time(s)); reads of it cannot be watched here, so whether a "
             "later task reads it first is unknown",
             describe_task(f.task), describe_variable(f), f.count);
       }
       return fmt::format("{} left the watched thread_local '{}' ({}) changed on thread {}",
                          describe_task(f.task), f.variable, f.type, describe_thread(f));
     },
     [](const finding& f) {
       if (is_plain(f)) {
         return fmt::format(
             "residue in {}\n"
             "  left changed by {} ({} time(s))\n"
             "    submitted at {}\n"
             "  Reads of it cannot be watched here (see the notice at start-up), so whether a\n"
             "  later task reads it first is unknown; on a pool the next task on that thread\n"
             "  sees the change.\n",
             describe_variable(f), describe_task(f.task), f.count,
             describe_site(f.task.submit_site));
       }
       return fmt::format(
           "residue in watched thread_local '{}' ({}) on thread {}\n"
           "  left changed by {}\n"
           "    submitted at {}\n"
           "  ctxpool restored it; without it the next task on this thread would see the "
           "change.\n",
           f.variable, f.type, describe_thread(f), describe_task(f.task),
           describe_site(f.task.submit_site));
     }},
    {finding_kind::leaked_value, "leaked-value", "leak", true, "LeakedContextValue",
     "Leaked context value",
     "A context variable's value is still alive at exit although no live context holds it.",
     "warning",
     [](const finding& f) {
       return fmt::format(
           "a value of context_var '{}' ({}) set by {} is still alive but held by no live "
           "context (a token, a captured snapshot or a stored handler keeps it)",
           f.variable, f.type, describe_task(f.task));
     },
     [](const finding& f) {
       return fmt::format(
           "leaked-value of context_var '{}' ({})\n"
           "  set by {} on thread T{}\n"
           "    submitted at {}\n"
           "  still alive, but no live context holds it: a token, a captured snapshot or a\n"
           "  stored handler keeps it.\n",
           f.variable, f.type, describe_task(f.task), f.thread, describe_site(f.task.submit_site));
     }},
    {finding_kind::leaked_context, "leaked-context", "leak", false, "ContextOutlivedTask",
     "Context outlived its task", "A context created inside a pool task is still alive at exit.",
     "warning",
     [](const finding& f) {
       return fmt::format("a context created by {} outlived it and is still alive",
                          describe_task(f.task));
     },
     [](const finding& f) {
       return fmt::format(
           "leaked-context created by {} on thread T{}\n"
           "    submitted at {}\n"
           "  the context outlived its task and is still alive.\n",
           describe_task(f.task), f.thread, describe_site(f.task.submit_site));
     }},
};

constexpr bool in_enum_order() {
  for (std::size_t i = 0; i < std::size(table); ++i) {
    if (static_cast<std::size_t>(table[i].kind) != i) return false;
  }
  return true;
}
static_assert(in_enum_order(), "finding kinds' rows must follow the enumerators' order");

}  // namespace

std::span<const kind_info> kind_table() noexcept { return table; }

const kind_info& info_of(finding_kind kind) noexcept {
  const auto index = static_cast<std::size_t>(kind);
  // An enumerator without a row is a build of the library that forgot it.
  return index < std::size(table) ? table[index] : table[0];
}

bool is_suppression_kind(std::string_view rule) noexcept {
  if (rule == "*" || rule == thread_cache_kind) return true;
  for (const kind_info& k : table) {
    if (rule == k.name || (!k.group.empty() && rule == k.group)) return true;
  }
  return false;
}

std::string suppression_kinds_list() {
  std::string list;
  for (const kind_info& k : table) list += fmt::format("{}, ", k.name);
  // Groups after the kinds they cover ("leaked-value, leaked-context, leak").
  std::string groups;
  for (std::size_t i = 0; i < std::size(table); ++i) {
    const std::string_view g = table[i].group;
    if (g.empty()) continue;
    bool seen = false;
    for (std::size_t j = 0; j < i; ++j) seen = seen || table[j].group == g;
    if (!seen) groups += fmt::format("{}, ", g);
  }
  return fmt::format("{}{}* or {}", list, groups, thread_cache_kind);
}

bool kind_matches(std::string_view rule, finding_kind kind) noexcept {
  const kind_info& k = info_of(kind);
  return rule == "*" || rule == k.name || (!k.group.empty() && rule == k.group);
}

}  // namespace ctxpool::diagnostics::detail

namespace ctxpool::diagnostics {

std::string_view to_string(finding_kind kind) noexcept { return detail::info_of(kind).name; }

}  // namespace ctxpool::diagnostics
