// Text-map carriers: how `extract` and `inject` read and write header fields.
//
// A carrier is whatever holds a message's fields: Boost.Beast's `http::fields`
// or any `http::request`/`http::response` (they derive from it), a
// `std::map`/`std::unordered_map`/`std::multimap` of strings, or a type of
// your own. `text_map_traits<Carrier>` says how to reach its fields:
//
//   static void for_each(const Carrier&, std::string_view name, F f);  // f(value) per field
//   static void set(Carrier&, std::string_view name, std::string_view value);  // replace all
//   // optional: every field once, so that `extract` reads a carrier in one pass
//   static void for_each_field(const Carrier&, F f);  // f(name, value) per field
//
// Field names are matched ASCII case-insensitively, as HTTP and the W3C
// specifications require, and every field with the name is visited in order,
// so repeated fields combine. Built in, by shape (no Boost header is included):
// - Beast-like fields: `c.equal_range(name)` yields elements with `.value()`,
//   and `c.set(name, value)` replaces (Beast compares names case-insensitively);
// - associative string containers: every key equal to the name ignoring case
//   is visited; `set` erases all of them, then inserts the lowercase name.
// For anything else (gRPC metadata, a message queue's properties), specialise
// `ctxpool::text_map_traits` with the two functions above.
//
// @par Thread safety
// The traits touch only the carrier passed in; the usual rules for the
// carrier's own type apply.
//
// @par Lifetime
// A `std::string_view` passed to the visitor is valid only during that call.
#pragma once

#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace ctxpool {

namespace detail {

[[nodiscard]] constexpr char ascii_lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

/// ASCII case-insensitive equality (header names, "Header Name" sections).
[[nodiscard]] constexpr bool ascii_iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

/// Visitor types used only to state the carrier concepts.
struct ignore_field {
  void operator()(std::string_view) const noexcept {}
};
struct ignore_named_field {
  void operator()(std::string_view, std::string_view) const noexcept {}
};

template <class S>
[[nodiscard]] std::string_view as_std_view(const S& s) noexcept {
  return std::string_view(s.data(), s.size());
}

/// Boost.Beast's basic_fields and messages, and anything shaped like them.
template <class C>
concept beast_like_fields = requires(const C& c, C& m, std::string_view name) {
  c.equal_range(name).first->value().data();
  c.equal_range(name).first->value().size();
  c.equal_range(name).first != c.equal_range(name).second;
  m.set(name, name);
};

/// std::map, std::unordered_map, std::multimap... of string-like keys and values.
template <class C>
concept string_map = requires(const C& c, C& m) {
  typename C::key_type;
  typename C::mapped_type;
  requires std::convertible_to<const typename C::key_type&, std::string_view>;
  requires std::convertible_to<const typename C::mapped_type&, std::string_view>;
  requires std::constructible_from<typename C::key_type, std::string>;
  requires std::constructible_from<typename C::mapped_type, std::string>;
  c.begin() != c.end();
  m.erase(m.begin());
  m.emplace(std::string(), std::string());
} && !beast_like_fields<C>;

}  // namespace detail

/// How `extract` and `inject` reach the fields of a `Carrier`: specialise it for
/// a carrier type of your own (see the header comment). The primary template
/// serves the built-in shapes and has no members for any other type.
template <class Carrier>
struct text_map_traits {};

/// Boost.Beast fields and messages (`http::fields`, `http::request<Body>`...).
template <detail::beast_like_fields Carrier>
struct text_map_traits<Carrier> {
  template <class F>
  static void for_each(const Carrier& carrier, std::string_view name, F&& f) {
    auto [first, last] = carrier.equal_range(name);
    for (; first != last; ++first) f(detail::as_std_view(first->value()));
  }
  template <class F>
  static void for_each_field(const Carrier& carrier, F&& f) {
    for (const auto& field : carrier)
      f(detail::as_std_view(field.name_string()), detail::as_std_view(field.value()));
  }
  static void set(Carrier& carrier, std::string_view name, std::string_view value) {
    carrier.set(name, value);
  }
};

/// Associative containers of strings, names compared ignoring case.
template <detail::string_map Carrier>
struct text_map_traits<Carrier> {
  template <class F>
  static void for_each(const Carrier& carrier, std::string_view name, F&& f) {
    for (const auto& [key, value] : carrier) {
      if (detail::ascii_iequals(key, name)) f(std::string_view(value));
    }
  }
  template <class F>
  static void for_each_field(const Carrier& carrier, F&& f) {
    for (const auto& [key, value] : carrier) f(std::string_view(key), std::string_view(value));
  }
  static void set(Carrier& carrier, std::string_view name, std::string_view value) {
    for (auto it = carrier.begin(); it != carrier.end();) {
      if (detail::ascii_iequals(it->first, name)) {
        it = carrier.erase(it);
      } else {
        ++it;
      }
    }
    std::string lower(name);
    for (char& c : lower) c = detail::ascii_lower(c);
    carrier.emplace(std::move(lower), std::string(value));
  }
};

/// A carrier `extract` can read: `text_map_traits<C>::for_each` exists.
template <class C>
concept text_map_reader = requires(const C& carrier, std::string_view name) {
  text_map_traits<C>::for_each(carrier, name, detail::ignore_field{});
};

/// A carrier whose fields can be read in one pass (`for_each_field`).
template <class C>
concept text_map_scannable = text_map_reader<C> && requires(const C& carrier) {
  text_map_traits<C>::for_each_field(carrier, detail::ignore_named_field{});
};

/// A carrier `inject` can write: `text_map_traits<C>::set` exists.
template <class C>
concept text_map_writer = requires(C& carrier, std::string_view name, std::string_view value) {
  text_map_traits<C>::set(carrier, name, value);
};

}  // namespace ctxpool
