// The current trace and baggage as context variables, and the carrier-independent part of extract.
#include <ctxpool/propagation.hpp>

namespace ctxpool {

// Function-local statics: a variable is usable from other translation units'
// static initialisers, and there is one of each per process.
context_var<trace_context>& trace_context_var() noexcept {
  static context_var<trace_context> var{"ctxpool.trace_context", trace_context{}};
  return var;
}

context_var<baggage>& baggage_var() noexcept {
  static context_var<baggage> var{"ctxpool.baggage", baggage{}};
  return var;
}

namespace detail {

trace_context trace_context_from_fields(std::span<const std::string_view> traceparent_fields,
                                        std::span<const std::string_view> tracestate_fields) {
  // Two traceparent fields cannot be one valid header (test suite:
  // test_traceparent_duplicated): restart.
  std::optional<traceparent> parent;
  if (traceparent_fields.size() == 1) parent = traceparent::parse(traceparent_fields[0]);
  if (!parent) return trace_context::start_new();
  return trace_context{
      parent->trace, parent->parent, parent->flags,
      tracestate_fields.empty() ? tracestate() : tracestate::parse(tracestate_fields), true};
}

}  // namespace detail

}  // namespace ctxpool
