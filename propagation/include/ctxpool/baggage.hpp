// W3C Baggage: the `baggage` header's user-defined key/value pairs, with properties.
//
// https://www.w3.org/TR/baggage/ : `key=value;property;pkey=pvalue,key2=value2`.
// Values (and property values) are held decoded, as UTF-8 text; `format`
// percent-encodes every byte outside the header's `baggage-octet` set (and `%`),
// `parse` decodes, replacing octet sequences that are not UTF-8 by U+FFFD.
//
//   auto bag = ctxpool::baggage::parse({"userId=Am%C3%A9lie,serverNode=DF%2028"});
//   bag.get("userId");                       // "Amélie"
//   bag.set("tenant", "acme", {{"ttl", "60"}});
//   std::string header = bag.format();       // "userId=Am%C3%A9lie,serverNode=DF%2028,tenant=acme;ttl=60"
//
// Parsing never throws: a member that breaks the grammar is dropped on its own
// and the rest kept (the specification leaves the choice to the receiver; this
// keeps the most). Keys are `token`s (RFC 7230) and are not percent-decoded.
// Duplicated keys are kept in order, as the specification asks of mutations.
//
// @par Thread safety
// A value type: distinct objects may be used from any threads; one object may
// be read concurrently (the first `entries()` decodes once, thread-safely) but
// not read while it is modified. Copies share their immutable state: copying is
// an atomic increment; modifying one gives it new state of its own.
//
// @par Lifetime
// Views returned by `get` and `entries` point into the `baggage` object they
// came from and stay valid until it is modified or destroyed.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ctxpool/trace_context.hpp>  // invalid_header_value

namespace ctxpool {

/// One property of a baggage member: `key` or `key=value` ("property").
struct baggage_property {
  std::string key;
  /// Decoded value; empty optional for a bare `key` property.
  std::optional<std::string> value;

  friend bool operator==(const baggage_property&, const baggage_property&) = default;
};

/// One baggage member ("list-member"): key, decoded value, properties.
struct baggage_entry {
  std::string key;
  std::string value;
  std::vector<baggage_property> properties;

  friend bool operator==(const baggage_entry&, const baggage_entry&) = default;
};

/// The `baggage` header's list of entries, in order.
class baggage {
 public:
  /// Members `format` keeps at most: the grammar's 180 ("baggage-string"),
  /// well above the 64 the "Limits" section requires to be propagated.
  static constexpr std::size_t max_members = 180;
  /// Bytes `format` keeps at most: the 8,192 of "Limits".
  static constexpr std::size_t max_bytes = 8192;

  /// An empty baggage.
  baggage() noexcept = default;

  /// The entries of the header fields, combined in order; invalid members dropped.
  [[nodiscard]] static baggage parse(std::span<const std::string_view> fields);
  [[nodiscard]] static baggage parse(std::initializer_list<std::string_view> fields) {
    return parse(std::span<const std::string_view>(fields.begin(), fields.size()));
  }
  [[nodiscard]] static baggage parse(std::string_view field) { return parse({field}); }

  /// Whether `key` is an RFC 7230 `token` (what a baggage key must be).
  [[nodiscard]] static bool is_valid_key(std::string_view key) noexcept;

  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] std::size_t size() const noexcept { return rep_.items(); }

  /// Every entry as header text (encoded, no white space), without the limits
  /// `format` applies. Kept with the entries, so sending it costs no formatting.
  [[nodiscard]] std::string_view text() const noexcept { return rep_.text(); }

  /// The value of the first entry with `key`, if any.
  [[nodiscard]] std::optional<std::string_view> get(std::string_view key) const;
  /// The first entry with `key`, if any.
  [[nodiscard]] const baggage_entry* find(std::string_view key) const;

  /// The entries, in order (decoded from the header text on first use).
  [[nodiscard]] std::span<const baggage_entry> entries() const;

  /// Sets `key` to `value` (any UTF-8 text; encoded on output): replaces the
  /// first entry with `key` in place and removes any later duplicates, or
  /// appends a new entry.
  /// @throws invalid_header_value if `key` or a property key is not a token.
  void set(std::string_view key, std::string_view value,
           std::vector<baggage_property> properties = {});

  /// Removes every entry with `key`; returns how many there were.
  std::size_t erase(std::string_view key);

  /// The header value: entries in order, each whole or not at all, while the
  /// result stays within `max_bytes` and `max_members` ("Limits": "MUST NOT
  /// propagate any partial list-members"); an entry that does not fit is
  /// skipped and later, smaller ones still go.
  [[nodiscard]] std::string format(std::size_t max_bytes_out = max_bytes) const;

  /// Same entries in the same order (the encoding is canonical, so the texts compare).
  friend bool operator==(const baggage& a, const baggage& b) noexcept {
    return a.text() == b.text();
  }

 private:
  struct rep;
  explicit baggage(detail::text_ref state) noexcept : rep_(std::move(state)) {}
  static baggage from_entries(std::vector<baggage_entry> entries);

  detail::text_ref rep_;  // canonical header text, entries decoded lazily; null when empty
};

}  // namespace ctxpool
