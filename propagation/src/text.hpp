// Header-text primitives shared by the traceparent, tracestate and baggage parsers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ctxpool::detail {

/// HTTP optional white space (RFC 9110 5.6.3: `OWS = *( SP / HTAB )`).
[[nodiscard]] constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

[[nodiscard]] constexpr std::string_view trim_ows(std::string_view text) noexcept {
  while (!text.empty() && is_ows(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_ows(text.back())) text.remove_suffix(1);
  return text;
}

/// Calls `f` with each `separator`-separated item of `text` (untrimmed; an
/// empty text is one empty item).
template <class F>
void for_each_list_item(std::string_view text, F&& f, char separator = ',') {
  for (;;) {
    const std::size_t end = text.find(separator);
    if (end == std::string_view::npos) {
      f(text);
      return;
    }
    f(text.substr(0, end));
    text.remove_prefix(end + 1);
  }
}

/// Character classes of the three grammars, one table lookup each.
enum char_class : std::uint8_t {
  cc_tchar = 1,             // RFC 7230 tchar: what a token (a baggage key) is made of
  cc_baggage_octet = 2,     // printable ASCII but space, '"', ',', ';' and '\\'
  cc_tracestate_key = 4,    // keychar: a-z 0-9 _ - * / @
  cc_tracestate_first = 8,  // a-z 0-9: what a tracestate key starts with
  cc_tracestate_value = 16  // chr: 0x20-0x7e but ',' and '='
};

inline constexpr std::array<std::uint8_t, 256> char_classes = [] {
  std::array<std::uint8_t, 256> table{};
  for (std::size_t c = 0x21; c <= 0x7e; ++c) {
    if (c != '"' && c != ',' && c != ';' && c != '\\') table[c] |= cc_baggage_octet;
  }
  for (std::size_t c = 0x20; c <= 0x7e; ++c) {
    if (c != ',' && c != '=') table[c] |= cc_tracestate_value;
  }
  for (std::size_t c = '0'; c <= '9'; ++c) {
    table[c] |= cc_tchar | cc_tracestate_key | cc_tracestate_first;
  }
  for (std::size_t c = 'a'; c <= 'z'; ++c) {
    table[c] |= cc_tchar | cc_tracestate_key | cc_tracestate_first;
  }
  for (std::size_t c = 'A'; c <= 'Z'; ++c) table[c] |= cc_tchar;
  for (char c : std::string_view("!#$%&'*+-.^_`|~"))
    table[static_cast<unsigned char>(c)] |= cc_tchar;
  for (char c : std::string_view("_-*/@"))
    table[static_cast<unsigned char>(c)] |= cc_tracestate_key;
  return table;
}();

[[nodiscard]] constexpr bool has_class(char c, std::uint8_t classes) noexcept {
  return (char_classes[static_cast<unsigned char>(c)] & classes) != 0;
}

[[nodiscard]] constexpr bool is_tchar(char c) noexcept { return has_class(c, cc_tchar); }
[[nodiscard]] constexpr bool is_baggage_octet(char c) noexcept {
  return has_class(c, cc_baggage_octet);
}

/// Decodes `%XX` escapes of a baggage value into `out`, then replaces byte
/// sequences that are not UTF-8 by U+FFFD. False (and `out` unspecified) when a
/// character is not a `baggage-octet` or a '%' is not followed by two hex digits.
[[nodiscard]] bool percent_decode_value(std::string_view text, std::string& out);

/// `text` with every maximal ill-formed UTF-8 subsequence replaced by U+FFFD
/// (the Unicode standard's "best practice", as WHATWG's decoder does).
[[nodiscard]] std::string sanitize_utf8(std::string_view text);

}  // namespace ctxpool::detail
