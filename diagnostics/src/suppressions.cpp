// The suppressions of a run (suppressions.hpp) and CTXPOOL_THREAD_CACHE's
// public functions.
#include "suppressions.hpp"

#include <fnmatch.h>

#include <ctxpool/diagnostics/thread_cache.hpp>

#include "default_suppressions.hpp"
#include "finding_kinds.hpp"

namespace ctxpool::diagnostics {
namespace detail {
namespace {

/// `pattern` matches `text`, or the last path component of `text`.
bool glob(const std::string& pattern, std::string_view text) {
  const std::string subject(text);
  if (::fnmatch(pattern.c_str(), subject.c_str(), 0) == 0) return true;
  const std::size_t slash = subject.rfind('/');
  return slash != std::string::npos &&
         ::fnmatch(pattern.c_str(), subject.c_str() + slash + 1, 0) == 0;
}

bool matches(const suppression& rule, const finding& f) {
  if (!kind_matches(rule.kind, f.kind)) return false;
  if (!f.variable.empty() && glob(rule.pattern, f.variable)) return true;
  for (const code_location* site :
       {&f.site, &f.write_site, &f.task.submit_site, &f.writer.submit_site}) {
    if (site->line() != 0 && glob(rule.pattern, site->file_name())) return true;
  }
  return false;
}

}  // namespace

void suppression_set::reset(std::vector<suppression> rules, bool use_defaults) {
  std::lock_guard lock(mutex_);
  rules_.clear();
  for (suppression& rule : rules) rules_.push_back({std::move(rule), 0});
  use_defaults_ = use_defaults;
}

std::optional<std::size_t> suppression_set::match(const finding& f) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    if (matches(rules_[i].rule, f)) {
      ++rules_[i].hits;
      return i;
    }
  }
  return std::nullopt;
}

void suppression_set::add_hits(std::size_t index, std::uint64_t n) {
  std::lock_guard lock(mutex_);
  if (index < rules_.size()) rules_[index].hits += n;
}

void suppression_set::clear_hits() {
  std::lock_guard lock(mutex_);
  for (suppression_count& rule : rules_) rule.hits = 0;
}

bool suppression_set::is_thread_cache(std::string_view name) {
  // State of code the program does not own: ctxpool's own, the C++ runtime's,
  // Boost's and test frameworks' (doctest's and GoogleTest's assertion state
  // changes in every task that checks something).
  for (std::string_view prefix : {"ctxpool::", "std::", "__gnu_cxx::", "__cxxabiv1::", "boost::",
                                  "fmt::", "doctest::", "testing::", "__"}) {
    if (name.starts_with(prefix)) return true;
  }
  std::lock_guard lock(mutex_);
  for (const std::string& cache : declared_) {
    if (thread_cache_name_matches(cache, name)) return true;
  }
  if (use_defaults_) {
    for (const std::string_view known : default_thread_caches) {
      if (glob(std::string(known), name)) return true;
    }
  }
  for (suppression_count& rule : rules_) {
    if (rule.rule.kind == thread_cache_kind && glob(rule.rule.pattern, name)) {
      ++rule.hits;
      return true;
    }
  }
  return false;
}

void suppression_set::declare_cache(std::string_view name) {
  std::lock_guard lock(mutex_);
  declared_.emplace_back(name);
}

std::vector<suppression_count> suppression_set::counts() const {
  std::lock_guard lock(mutex_);
  return rules_;
}

suppression_set& the_suppressions() {
  static suppression_set* instance = new suppression_set;  // never destroyed
  return *instance;
}

}  // namespace detail

void declare_thread_cache(std::string_view name) { detail::the_suppressions().declare_cache(name); }

bool thread_cache_name_matches(std::string_view declared, std::string_view discovered) noexcept {
  if (declared == discovered) return true;
  // Declared unqualified (or partly qualified) inside its namespace or function.
  return discovered.size() > declared.size() + 2 && discovered.ends_with(declared) &&
         discovered.substr(discovered.size() - declared.size() - 2, 2) == "::";
}

}  // namespace ctxpool::diagnostics
