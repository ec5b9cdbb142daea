// W3C Trace Context (Level 2) values: ids, flags, `traceparent`, `tracestate`.
//
// These are plain values with exact parsers and formatters for the two
// headers of https://www.w3.org/TR/trace-context-2/ ; they know nothing about
// carriers or the current context (<ctxpool/propagation.hpp> does that).
//
//   auto parent = ctxpool::traceparent::parse(header);       // std::optional
//   if (parent) std::string text = parent->to_string();     // always version 00
//   auto state = ctxpool::tracestate::parse({field1, field2});  // combined
//   state.set("congo", "t61rcWkgMzE");                       // moves to the front
//
// Parsing never throws: a malformed header yields `std::nullopt` (traceparent)
// or an empty `tracestate`, which is what the specification asks a receiver to
// do with it. Building a value from parts the program chose (`tracestate::set`)
// throws `ctxpool::invalid_header_value` on a key or value the grammar forbids.
//
// @par Thread safety
// All types here are values: distinct objects may be used from any threads; one
// object may be read concurrently but not read while it is modified. Copies of a
// `tracestate` share their immutable members (a copy is an atomic increment,
// never an allocation); modifying one gives it new members of its own, so
// concurrent use of different copies is safe.
//
// @par Lifetime
// String views returned by `tracestate::get` and `tracestate::members` point
// into the `tracestate` object they came from and stay valid until it is
// modified or destroyed.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ctxpool/detail/small_alloc.hpp>

namespace ctxpool {

/// A key, value or header the propagation grammar forbids, given by the program.
class invalid_header_value : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

/// A random 64-bit value from this thread's generator (seeded once per thread
/// from the operating system's entropy source; no lock, no shared state).
std::uint64_t random_u64() noexcept;

/// Values of the lowercase hex digits (HEXDIGLC); 0xff for every other character.
inline constexpr std::array<std::uint8_t, 256> hex_digit_values = [] {
  std::array<std::uint8_t, 256> table{};
  for (auto& v : table) v = 0xff;
  for (std::size_t c = 0; c < 10; ++c) table['0' + c] = static_cast<std::uint8_t>(c);
  for (std::size_t c = 0; c < 6; ++c) table['a' + c] = static_cast<std::uint8_t>(10 + c);
  return table;
}();

/// Lowercase hex value of `c`, or -1.
constexpr int hex_digit_value(char c) noexcept {
  const std::uint8_t v = hex_digit_values[static_cast<unsigned char>(c)];
  return v == 0xff ? -1 : v;
}

/// Decodes 16 lowercase hex digits at `p` into `out`; false if one is not.
inline bool decode_hex_word(const char* p, std::uint64_t& out) noexcept {
  std::uint64_t value = 0;
  std::uint8_t seen = 0;  // 0xff marks a non-digit: checked once, after the loop
  for (int i = 0; i < 16; ++i) {
    const std::uint8_t digit = hex_digit_values[static_cast<unsigned char>(p[i])];
    seen |= digit;
    value = value << 4 | (digit & 0xf);
  }
  out = value;
  return (seen & 0xf0) == 0;
}

/// Writes `value` as 16 lowercase hex digits at `out`.
inline void encode_hex_word(std::uint64_t value, char* out) noexcept {
  constexpr const char* digits = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out[i] = digits[value & 0xf];
    value >>= 4;
  }
}

/// An identifier of `Bytes` bytes written as 2*Bytes lowercase hex digits.
///
/// Held as big-endian 64-bit words (the hex text's order), so parsing,
/// formatting, copying and comparing work a word at a time.
template <std::size_t Bytes>
class hex_id {
  static_assert(Bytes % 8 == 0);
  static constexpr std::size_t words = Bytes / 8;

 public:
  /// Bytes in the identifier.
  static constexpr std::size_t size = Bytes;
  /// Characters in its hex form.
  static constexpr std::size_t hex_size = 2 * Bytes;

  /// The all-zero identifier, which the specification forbids (`is_valid()` is false).
  constexpr hex_id() noexcept = default;
  /// The identifier with these bytes (most significant first, as written in hex).
  constexpr explicit hex_id(const std::array<std::uint8_t, Bytes>& bytes) noexcept {
    for (std::size_t i = 0; i < Bytes; ++i) words_[i / 8] = words_[i / 8] << 8 | bytes[i];
  }

  /// Parses exactly `hex_size` lowercase hex digits (all zeros included: check
  /// `is_valid()`); anything else, uppercase too, is `std::nullopt`.
  [[nodiscard]] static std::optional<hex_id> from_hex(std::string_view text) noexcept {
    if (text.size() != hex_size) return std::nullopt;
    hex_id id;
    if (!id.assign_hex(text.data())) return std::nullopt;
    return id;
  }

  /// Parses `hex_size` digits at `text` into this id; false (and this id
  /// unspecified) if one is not a lowercase hex digit.
  bool assign_hex(const char* text) noexcept {
    bool ok = true;
    for (std::size_t w = 0; w < words; ++w) ok &= decode_hex_word(text + 16 * w, words_[w]);
    return ok;
  }

  /// A random, valid identifier (every bit random; never all zeros).
  [[nodiscard]] static hex_id random() noexcept {
    hex_id id;
    do {
      for (std::uint64_t& word : id.words_) word = random_u64();
    } while (!id.is_valid());
    return id;
  }

  /// False for the all-zero identifier, which a header may not carry.
  [[nodiscard]] constexpr bool is_valid() const noexcept {
    std::uint64_t any = 0;
    for (std::uint64_t word : words_) any |= word;
    return any != 0;
  }

  /// The bytes, most significant first.
  [[nodiscard]] constexpr std::array<std::uint8_t, Bytes> bytes() const noexcept {
    std::array<std::uint8_t, Bytes> out{};
    for (std::size_t i = 0; i < Bytes; ++i) {
      out[i] = static_cast<std::uint8_t>(words_[i / 8] >> (56 - 8 * (i % 8)));
    }
    return out;
  }

  /// Writes the `hex_size` lowercase hex digits to `out` (no terminator).
  void to_chars(char* out) const noexcept {
    for (std::size_t w = 0; w < words; ++w) encode_hex_word(words_[w], out + 16 * w);
  }

  /// The lowercase hex form, as in a `traceparent` header.
  [[nodiscard]] std::string to_string() const {
    std::string text(hex_size, '\0');
    to_chars(text.data());
    return text;
  }

  friend constexpr bool operator==(const hex_id&, const hex_id&) noexcept = default;

 private:
  std::array<std::uint64_t, words> words_{};
};

/// The shared, immutable state of a `tracestate` or `baggage`: reference count
/// and header text in one allocation (a type derived from it may keep more
/// between the two). Copies of a value share it; modifying one builds a new one.
struct text_rep {
  mutable std::atomic<std::uint32_t> refs{1};
  std::uint32_t size = 0;   // characters of text
  std::uint32_t items = 0;  // members the text holds
  std::uint32_t block = 0;  // bytes allocated, for small_free
  char* chars = nullptr;    // the text, in this allocation after the derived object
  void (*destroy)(text_rep*) noexcept = nullptr;

  [[nodiscard]] std::string_view text() const noexcept { return {chars, size}; }
};

/// Allocates a `Rep` (derived from text_rep) with room for `capacity` characters.
/// Through the context layer's per-thread block cache: a request's tracestate
/// and baggage are as short-lived as the context values that hold them.
template <class Rep>
Rep* make_text_rep(std::size_t capacity) {
  const std::size_t block = sizeof(Rep) + capacity;
  if (block > UINT32_MAX) throw std::length_error("ctxpool: header text too long");
  void* memory = small_alloc(block);
  Rep* rep = ::new (memory) Rep();
  rep->block = static_cast<std::uint32_t>(block);
  rep->chars = static_cast<char*>(memory) + sizeof(Rep);
  rep->destroy = [](text_rep* base) noexcept {
    Rep* derived = static_cast<Rep*>(base);
    const std::size_t size = derived->block;
    derived->~Rep();
    small_free(static_cast<void*>(derived), size);
  };
  return rep;
}

/// An owning handle to a text_rep (an intrusive shared pointer).
class text_ref {
 public:
  text_ref() noexcept = default;
  explicit text_ref(text_rep* adopted) noexcept : rep_(adopted) {}
  text_ref(const text_ref& other) noexcept : rep_(other.rep_) {
    if (rep_ != nullptr) rep_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  text_ref(text_ref&& other) noexcept : rep_(std::exchange(other.rep_, nullptr)) {}
  text_ref& operator=(text_ref other) noexcept {
    std::swap(rep_, other.rep_);
    return *this;
  }
  ~text_ref() {
    if (rep_ != nullptr && rep_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
      rep_->destroy(rep_);
  }

  [[nodiscard]] text_rep* get() const noexcept { return rep_; }
  [[nodiscard]] std::string_view text() const noexcept {
    return rep_ != nullptr ? rep_->text() : std::string_view();
  }
  [[nodiscard]] std::size_t items() const noexcept { return rep_ != nullptr ? rep_->items : 0; }

 private:
  text_rep* rep_ = nullptr;
};

}  // namespace detail

/// The 16-byte id of a whole distributed trace (`trace-id`; spec section "trace-id").
using trace_id = detail::hex_id<16>;
/// The 8-byte id of one operation in a trace: the `parent-id` of a
/// `traceparent` ("parent-id"), the "span id" of tracing systems.
using span_id = detail::hex_id<8>;

/// The `trace-flags` byte ("trace-flags"): the flags this version defines.
struct trace_flags {
  /// The caller may have recorded trace data ("Sampled flag").
  static constexpr std::uint8_t sampled_bit = 0x01;
  /// At least the right-most 7 bytes of the trace id are random ("Random Trace ID Flag", Level 2).
  static constexpr std::uint8_t random_bit = 0x02;
  /// Every bit this version defines; others are sent as zero ("Other Flags").
  static constexpr std::uint8_t known_bits = sampled_bit | random_bit;

  /// The flags; only `known_bits` are ever kept.
  std::uint8_t bits = 0;

  [[nodiscard]] constexpr bool sampled() const noexcept { return (bits & sampled_bit) != 0; }
  [[nodiscard]] constexpr bool random() const noexcept { return (bits & random_bit) != 0; }
  /// These flags with the sampled flag set to `on`.
  [[nodiscard]] constexpr trace_flags with_sampled(bool on) const noexcept {
    return {static_cast<std::uint8_t>(on ? bits | sampled_bit : bits & ~sampled_bit)};
  }

  friend constexpr bool operator==(trace_flags, trace_flags) noexcept = default;
};

/// A parsed `traceparent` header ("Traceparent Header"): trace id, parent id and flags.
///
/// `parse` implements the rules of "Versioning of traceparent": version `00` must be exactly
/// 55 characters; a higher version (not `ff`) is read by its first four fields
/// when it is at least 55 characters and the flags are followed by the end or a
/// `-`; `to_string` always writes version `00` ("Downgrade the version", in "Mutating the traceparent Field").
struct traceparent {
  /// Length of a version-00 header.
  static constexpr std::size_t text_size = 55;

  trace_id trace;
  span_id parent;
  trace_flags flags;

  /// The header's fields, or `std::nullopt` when the specification says to
  /// ignore it (restart the trace). Leading and trailing spaces and tabs (HTTP
  /// optional white space) are skipped. Flags other than `known_bits` are dropped.
  [[nodiscard]] static std::optional<traceparent> parse(std::string_view text) noexcept;

  /// The version-00 header text (55 characters), without allocating.
  [[nodiscard]] std::array<char, text_size> to_chars() const noexcept;
  /// The version-00 header text.
  [[nodiscard]] std::string to_string() const;

  friend bool operator==(const traceparent&, const traceparent&) noexcept = default;
};

/// The `tracestate` header ("Tracestate Header"): up to 32 vendor `key=value` members, left-most first.
///
/// Parsing follows "tracestate Header Field Values": several header fields are one list in order, empty
/// and white-space members are skipped, and a member that breaks the key or
/// value grammar, or more than 32 members, makes the whole header invalid
/// (an empty `tracestate` results). A key repeated on input keeps its
/// left-most (most recent position, "Combined Header Value") member; later duplicates are dropped.
class tracestate {
 public:
  /// Most members a `tracestate` may hold ("tracestate Header Field Values").
  static constexpr std::size_t max_members = 32;
  /// Length `format` keeps by default: the 512 characters "tracestate Limits" asks for.
  static constexpr std::size_t propagated_length = 512;
  /// Members longer than this are the first dropped when truncating ("tracestate Limits").
  static constexpr std::size_t long_member = 128;

  /// One `key=value` member; views into the owning `tracestate`.
  struct member {
    std::string_view key;
    std::string_view value;
  };

  /// An empty `tracestate`.
  tracestate() noexcept = default;

  /// The combined value of the header fields, in order ("MAY be sent or
  /// received as multiple header fields"); empty if the result is invalid.
  [[nodiscard]] static tracestate parse(std::span<const std::string_view> fields);
  [[nodiscard]] static tracestate parse(std::initializer_list<std::string_view> fields) {
    return parse(std::span<const std::string_view>(fields.begin(), fields.size()));
  }
  [[nodiscard]] static tracestate parse(std::string_view field) { return parse({field}); }

  /// Whether `key` / `value` follow the "Key" and "Value" grammar.
  [[nodiscard]] static bool is_valid_key(std::string_view key) noexcept;
  [[nodiscard]] static bool is_valid_value(std::string_view value) noexcept;

  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] std::size_t size() const noexcept { return rep_.items(); }

  /// Every member as header text (`key=value,...`, no white space), untruncated.
  [[nodiscard]] std::string_view text() const noexcept { return rep_.text(); }

  /// The value of `key`, if present.
  [[nodiscard]] std::optional<std::string_view> get(std::string_view key) const noexcept;

  /// The members, left-most first.
  [[nodiscard]] std::vector<member> members() const;

  /// Adds or updates `key` and moves it to the front ("Mutating the tracestate Field": "Modified keys MUST
  /// be moved to the beginning"); when that makes 33 members the right-most
  /// one is removed ("tracestate Header Field Values").
  /// @throws invalid_header_value if the key or value breaks the grammar.
  void set(std::string_view key, std::string_view value);

  /// Removes `key`; returns whether it was present.
  bool erase(std::string_view key);

  /// The header value, at most `max_length` characters: when the whole list is
  /// longer, whole members are dropped, first those longer than 128 characters
  /// (from the right), then from the right ("tracestate Limits"). Never a partial member.
  [[nodiscard]] std::string format(std::size_t max_length = propagated_length) const;

  /// Same members in the same order.
  friend bool operator==(const tracestate& a, const tracestate& b) noexcept {
    return a.text() == b.text();
  }

 private:
  explicit tracestate(detail::text_ref state) noexcept : rep_(std::move(state)) {}

  detail::text_ref rep_;  // the members as canonical text; null when empty
};

/// The trace a piece of work belongs to: what `extract` read from the incoming
/// request (or started, when it carried no valid `traceparent`).
struct trace_context {
  /// The trace; every outgoing call of this work carries it.
  trace_id trace;
  /// The caller's operation (the received `parent-id`), or, for a trace
  /// started here, the id generated for this work.
  span_id parent;
  /// The flags to send on (sampled and random-trace-id only).
  trace_flags flags;
  /// The vendors' state, sent on unchanged unless the program modifies it.
  tracestate state;
  /// True when the trace came from the carrier; false when it was started
  /// here because the carrier had no valid `traceparent`.
  bool remote = false;

  /// A new trace: random trace id (with the random-trace-id flag set, "Random Trace ID Flag"),
  /// random parent id, not sampled, no tracestate.
  [[nodiscard]] static trace_context start_new();

  /// The `traceparent` of an outgoing call made as operation `operation`.
  [[nodiscard]] traceparent outgoing(span_id operation) const noexcept {
    return {trace, operation, flags};
  }
};

}  // namespace ctxpool
