// Exception types thrown by ctxpool's context layer.
//
// Each derives from the standard exception that describes the same kind of
// failure, so generic handlers keep working; messages say what was wrong and
// what to do about it, in the manner of CPython's contextvars errors.
#pragma once

#include <stdexcept>
#include <string>

namespace ctxpool {

/// A variable has no value (and no default) where one was required.
/// The counterpart of Python's LookupError.
class lookup_error : public std::out_of_range {
 public:
  using std::out_of_range::out_of_range;
};

/// A token was misused: reset twice, reset through another variable, or reset
/// in a context other than the one that created it.
class token_error : public std::invalid_argument {
 public:
  /// Which of the three misuses happened.
  enum class reason { already_used, other_variable, other_context };

  token_error(reason why, const std::string& message)
      : std::invalid_argument(message), reason_(why) {}

  /// Which of the three misuses happened, for callers that branch on it.
  [[nodiscard]] reason why() const noexcept { return reason_; }

 private:
  reason reason_;
};

/// A context was entered while it is already entered (on any thread).
class context_error : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

}  // namespace ctxpool
