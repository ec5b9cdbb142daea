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
// `tracestate` share their members until one of them is modified (copy on
// write), so a copy is an atomic increment, never an allocation, and concurrent
// use of different copies is safe.
//
// @par Lifetime
// String views returned by `tracestate::get` and `tracestate::members` point
// into the `tracestate` object they came from and stay valid until it is
// modified or destroyed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

/// Lowercase hex value of `c`, or -1.
constexpr int hex_digit_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/// An identifier of `Bytes` bytes written as 2*Bytes lowercase hex digits.
template <std::size_t Bytes>
class hex_id {
 public:
  /// Bytes in the identifier.
  static constexpr std::size_t size = Bytes;
  /// Characters in its hex form.
  static constexpr std::size_t hex_size = 2 * Bytes;

  /// The all-zero identifier, which the specification forbids (`is_valid()` is false).
  constexpr hex_id() noexcept = default;
  /// The identifier with these bytes (big-endian, as written in hex).
  constexpr explicit hex_id(const std::array<std::uint8_t, Bytes>& bytes) noexcept : bytes_(bytes) {}

  /// Parses exactly `hex_size` lowercase hex digits (all zeros included: check
  /// `is_valid()`); anything else, uppercase too, is `std::nullopt`.
  [[nodiscard]] static constexpr std::optional<hex_id> from_hex(std::string_view text) noexcept {
    if (text.size() != hex_size) return std::nullopt;
    hex_id id;
    for (std::size_t i = 0; i < Bytes; ++i) {
      const int high = hex_digit_value(text[2 * i]);
      const int low = hex_digit_value(text[2 * i + 1]);
      if ((high | low) < 0) return std::nullopt;
      id.bytes_[i] = static_cast<std::uint8_t>(high << 4 | low);
    }
    return id;
  }

  /// A random, valid identifier (every byte random; never all zeros).
  [[nodiscard]] static hex_id random() noexcept {
    hex_id id;
    do {
      for (std::size_t i = 0; i < Bytes; i += 8) {
        const std::uint64_t bits = random_u64();
        for (std::size_t j = 0; j < 8 && i + j < Bytes; ++j) {
          id.bytes_[i + j] = static_cast<std::uint8_t>(bits >> (8 * j));
        }
      }
    } while (!id.is_valid());
    return id;
  }

  /// False for the all-zero identifier, which a header may not carry.
  [[nodiscard]] constexpr bool is_valid() const noexcept {
    for (std::uint8_t b : bytes_) {
      if (b != 0) return true;
    }
    return false;
  }

  /// The bytes, most significant first.
  [[nodiscard]] constexpr const std::array<std::uint8_t, Bytes>& bytes() const noexcept {
    return bytes_;
  }

  /// Writes the `hex_size` lowercase hex digits to `out` (no terminator).
  constexpr void to_chars(char* out) const noexcept {
    constexpr const char* digits = "0123456789abcdef";
    for (std::size_t i = 0; i < Bytes; ++i) {
      out[2 * i] = digits[bytes_[i] >> 4];
      out[2 * i + 1] = digits[bytes_[i] & 0xf];
    }
  }

  /// The lowercase hex form, as in a `traceparent` header.
  [[nodiscard]] std::string to_string() const {
    std::string text(hex_size, '\0');
    to_chars(text.data());
    return text;
  }

  friend constexpr bool operator==(const hex_id&, const hex_id&) noexcept = default;

 private:
  std::array<std::uint8_t, Bytes> bytes_{};
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
  [[nodiscard]] std::size_t size() const noexcept { return data_ ? data_->size() : 0; }

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
  friend bool operator==(const tracestate& a, const tracestate& b) noexcept;

 private:
  struct entry {
    std::string key;
    std::string value;
  };
  using entries = std::vector<entry>;
  entries& mutable_entries();

  std::shared_ptr<const entries> data_;  // null when empty; shared by copies
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
