// libFuzzer target for the propagation parsers (built with clang, -fsanitize=fuzzer,address,undefined).
//
// Any input: no crash, no sanitizer report, and every header ctxpool emits
// parses back to itself (format(parse(format(x))) == format(x)), for
// traceparent, tracestate and baggage, and for values set through the API.
// The first byte picks the header; '\n' separates repeated header fields.
#include <ctxpool/baggage.hpp>
#include <ctxpool/trace_context.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "propagation_fuzz: broken property: %s\n", what);
    std::abort();
  }
}

std::vector<std::string_view> split_fields(std::string_view text) {
  std::vector<std::string_view> fields;
  for (;;) {
    const std::size_t end = text.find('\n');
    fields.push_back(text.substr(0, end));
    if (end == std::string_view::npos) return fields;
    text.remove_prefix(end + 1);
  }
}

void fuzz_traceparent(std::string_view text) {
  const auto parsed = ctxpool::traceparent::parse(text);
  if (!parsed) return;
  const std::string emitted = parsed->to_string();
  require(emitted.size() == ctxpool::traceparent::text_size && emitted.starts_with("00-"),
          "traceparent is emitted as version 00, 55 characters");
  const auto again = ctxpool::traceparent::parse(emitted);
  require(again && *again == *parsed && again->to_string() == emitted, "traceparent reads back");
}

void fuzz_tracestate(std::string_view text) {
  const std::vector<std::string_view> fields = split_fields(text);
  ctxpool::tracestate state = ctxpool::tracestate::parse(std::span<const std::string_view>(fields));
  require(state.size() <= ctxpool::tracestate::max_members, "at most 32 members");
  for (const std::size_t limit :
       {std::size_t{100000}, ctxpool::tracestate::propagated_length, std::size_t{64}}) {
    const std::string emitted = state.format(limit);
    require(emitted.size() <= limit, "tracestate within its length");
    const auto back = ctxpool::tracestate::parse(emitted);
    require(back.format(100000) == emitted, "tracestate reads back");
    if (limit == 100000) require(back == state, "untruncated tracestate reads back equal");
  }
  // A value set through the API (the input's first member's key, if valid).
  if (!state.empty()) {
    const auto first = state.members().front();
    ctxpool::tracestate copy = state;
    copy.set(std::string(first.key), "x");
    require(copy.members().front().key == first.key && copy.size() == state.size(),
            "set moves the key to the front without duplicating it");
    require(state.get(first.key) == first.value, "copies are values");
  }
}

void fuzz_baggage(std::string_view text) {
  const std::vector<std::string_view> fields = split_fields(text);
  const ctxpool::baggage bag = ctxpool::baggage::parse(std::span<const std::string_view>(fields));
  const std::string emitted = bag.format();
  require(emitted.size() <= ctxpool::baggage::max_bytes, "baggage within 8192 bytes");
  const ctxpool::baggage back = ctxpool::baggage::parse(emitted);
  require(back.format() == emitted, "baggage reads back");
  require(back.size() <= bag.size(), "nothing invented");
}

void fuzz_baggage_set(std::string_view text) {
  // The input as a value (any bytes): sent encoded, read back as the same text
  // (invalid UTF-8 having been replaced by U+FFFD on set).
  ctxpool::baggage bag;
  bag.set("k", text, {{"p", std::string(text)}, {"flag", std::nullopt}});
  const std::string emitted = bag.format();
  const ctxpool::baggage back = ctxpool::baggage::parse(emitted);
  if (emitted.empty()) return;  // too large to send at all: nothing partial
  require(back == bag, "a value set through the API reads back equal");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0: fuzz_traceparent(text); break;
    case 1: fuzz_tracestate(text); break;
    case 2: fuzz_baggage(text); break;
    default: fuzz_baggage_set(text); break;
  }
  return 0;
}
