// Context across process boundaries: W3C Trace Context and Baggage on every task.
//
// `extract(carrier)` reads an incoming request's `traceparent`, `tracestate`
// and `baggage` fields into two context variables of the current context, so
// the trace and the baggage follow the request's work through every task,
// Asio handler and coroutine step, as any `context_var` does. `inject(carrier)`
// writes them into an outgoing request, as a new operation (a fresh parent
// id) of the same trace:
//
//   pool.post([req = std::move(req)] {          // each task: a fresh context
//     ctxpool::extract(req);                    // Beast request: names ignore case
//     log("trace {}", ctxpool::current_trace()->trace.to_string());
//     http::request<http::string_body> call{http::verb::post, "/next", 11};
//     ctxpool::inject(call);                    // same trace id, new parent id
//   });
//
// An incoming request without a valid `traceparent` starts a new trace (random
// ids, random-trace-id flag set, `tracestate` dropped), as the specification's
// processing model asks, so `current_trace()` is set after any `extract`.
// Carriers are described in <ctxpool/text_map.hpp>; the values in
// <ctxpool/trace_context.hpp> and <ctxpool/baggage.hpp>.
//
// @par Thread safety
// Every function acts on the calling thread's current context and on the
// carrier passed in; they may be called concurrently on different carriers.
// Id generation is per thread and lock-free.
//
// @par Lifetime
// `extract` sets the two variables in the current context and keeps no token:
// call it inside the task, handler or `context::run` that serves the request,
// and the values live exactly as long as that context (a pool task's fresh
// context ends with the task). Values read with `current_trace()` and
// `current_baggage()` are copies (cheap: shared, copy-on-write state).
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include <ctxpool/baggage.hpp>
#include <ctxpool/context.hpp>
#include <ctxpool/text_map.hpp>
#include <ctxpool/trace_context.hpp>

namespace ctxpool {

/// The field names, lowercase as the specifications recommend.
namespace header_name {
inline constexpr std::string_view traceparent = "traceparent";
inline constexpr std::string_view tracestate = "tracestate";
inline constexpr std::string_view baggage = "baggage";
}  // namespace header_name

/// The context variable holding the current trace. Its default, outside any
/// trace, is a `trace_context` with the invalid all-zero trace id.
[[nodiscard]] context_var<trace_context>& trace_context_var() noexcept;
/// The context variable holding the current baggage (default: empty).
[[nodiscard]] context_var<baggage>& baggage_var() noexcept;

/// The current context's trace, if `extract` (or a `set`) gave it one.
[[nodiscard]] inline std::optional<trace_context> current_trace() {
  trace_context trace = trace_context_var().get();
  if (!trace.trace.is_valid()) return std::nullopt;
  return trace;
}
/// The current context's baggage (empty if none was set).
[[nodiscard]] inline baggage current_baggage() { return baggage_var().get(); }

namespace detail {

/// The values of every field with one name, in order; no allocation for up to
/// four fields (the common case is one).
class field_values {
 public:
  void push_back(std::string_view value) {
    if (size_ < inline_.size()) {
      inline_[size_] = value;
    } else {
      if (size_ == inline_.size()) overflow_.assign(inline_.begin(), inline_.end());
      overflow_.push_back(value);
    }
    ++size_;
  }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::span<const std::string_view> view() const noexcept {
    return size_ <= inline_.size() ? std::span<const std::string_view>(inline_.data(), size_)
                                   : std::span<const std::string_view>(overflow_);
  }

 private:
  std::array<std::string_view, 4> inline_{};
  std::vector<std::string_view> overflow_;
  std::size_t size_ = 0;
};

template <text_map_reader Carrier>
field_values read_fields(const Carrier& carrier, std::string_view name) {
  field_values values;
  text_map_traits<Carrier>::for_each(
      carrier, name, [&values](std::string_view value) { values.push_back(value); });
  return values;
}

/// The three fields `extract` reads, in one pass over the carrier when it can.
struct propagation_fields {
  field_values traceparent;
  field_values tracestate;
  field_values baggage;
};

template <text_map_reader Carrier>
propagation_fields read_propagation_fields(const Carrier& carrier) {
  propagation_fields fields;
  if constexpr (text_map_scannable<Carrier>) {
    text_map_traits<Carrier>::for_each_field(
        carrier, [&fields](std::string_view name, std::string_view value) {
          // The lengths differ: one comparison per field decides.
          if (name.size() == header_name::traceparent.size()) {
            if (ascii_iequals(name, header_name::traceparent)) fields.traceparent.push_back(value);
          } else if (name.size() == header_name::tracestate.size()) {
            if (ascii_iequals(name, header_name::tracestate)) fields.tracestate.push_back(value);
          } else if (name.size() == header_name::baggage.size()) {
            if (ascii_iequals(name, header_name::baggage)) fields.baggage.push_back(value);
          }
        });
  } else {
    fields.traceparent = read_fields(carrier, header_name::traceparent);
    fields.tracestate = read_fields(carrier, header_name::tracestate);
    fields.baggage = read_fields(carrier, header_name::baggage);
  }
  return fields;
}

/// The trace context of incoming fields (the carrier-independent part of extract).
trace_context trace_context_from_fields(std::span<const std::string_view> traceparent_fields,
                                        std::span<const std::string_view> tracestate_fields);

}  // namespace detail

/// The trace context a carrier carries, without touching the current context.
/// Exactly one valid `traceparent` field continues that trace (two fields are
/// invalid, "Traceparent Header"); otherwise a new trace starts
/// (`remote == false`) and `tracestate` is ignored ("Tracestate Header": no
/// `tracestate` without a parsed `traceparent`).
template <text_map_reader Carrier>
[[nodiscard]] trace_context extract_trace_context(const Carrier& carrier) {
  const detail::field_values parents = detail::read_fields(carrier, header_name::traceparent);
  const detail::field_values states = detail::read_fields(carrier, header_name::tracestate);
  return detail::trace_context_from_fields(parents.view(), states.view());
}

/// The baggage a carrier carries (all `baggage` fields combined), without
/// touching the current context.
template <text_map_reader Carrier>
[[nodiscard]] baggage extract_baggage(const Carrier& carrier) {
  const detail::field_values fields = detail::read_fields(carrier, header_name::baggage);
  return fields.size() == 0 ? baggage() : baggage::parse(fields.view());
}

/// Reads the carrier's trace context and baggage and makes them the current
/// context's (`current_trace()`, `current_baggage()`), replacing earlier ones.
/// @returns the trace now current.
template <text_map_reader Carrier>
trace_context extract(const Carrier& carrier) {
  const detail::propagation_fields fields = detail::read_propagation_fields(carrier);
  trace_context trace =
      detail::trace_context_from_fields(fields.traceparent.view(), fields.tracestate.view());
  (void)trace_context_var().set(trace);
  if (fields.baggage.size() != 0) {
    (void)baggage_var().set(baggage::parse(fields.baggage.view()));
  } else if (!baggage_var().get().empty()) {  // a request without baggage has none
    (void)baggage_var().set(baggage());
  }
  return trace;
}

/// Writes `traceparent` (as `parent.to_chars()`) and, when not empty,
/// `tracestate` (truncated to 512 characters by whole members) into `carrier`.
template <text_map_writer Carrier>
void inject_trace_context(Carrier& carrier, const traceparent& parent, const tracestate& state) {
  const std::array<char, traceparent::text_size> text = parent.to_chars();
  text_map_traits<Carrier>::set(carrier, header_name::traceparent,
                                std::string_view(text.data(), text.size()));
  if (state.empty()) return;
  if (state.text().size() <= tracestate::propagated_length) {
    text_map_traits<Carrier>::set(carrier, header_name::tracestate, state.text());  // no formatting
  } else {
    text_map_traits<Carrier>::set(carrier, header_name::tracestate, state.format());
  }
}

/// Writes `baggage` into `carrier` when `bag` is not empty (within the limits,
/// whole members only).
template <text_map_writer Carrier>
void inject_baggage(Carrier& carrier, const baggage& bag) {
  if (bag.empty()) return;
  if (bag.text().size() <= baggage::max_bytes && bag.size() <= baggage::max_members) {
    text_map_traits<Carrier>::set(carrier, header_name::baggage, bag.text());  // no formatting
  } else {
    text_map_traits<Carrier>::set(carrier, header_name::baggage, bag.format());
  }
}

/// Writes the current trace and baggage into an outgoing request's carrier,
/// as a new operation of the current trace: the same trace id, flags and
/// tracestate, and a fresh random parent id on every call ("Mutating the
/// traceparent Field": "Update parent-id"). Without a current trace, each call
/// starts a new one. Fields the current context has no value for are left as
/// the carrier had them.
/// @returns the parent id written (the id of the outgoing operation).
template <text_map_writer Carrier>
span_id inject(Carrier& carrier) {
  std::optional<trace_context> trace = current_trace();
  if (!trace) trace = trace_context::start_new();
  const span_id operation = span_id::random();
  inject_trace_context(carrier, trace->outgoing(operation), trace->state);
  inject_baggage(carrier, current_baggage());
  return operation;
}

}  // namespace ctxpool
