// Header-text primitives shared by the traceparent, tracestate and baggage parsers.
#pragma once

#include <cstddef>
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

/// RFC 7230 `tchar`: what a `token` (a baggage key) is made of.
[[nodiscard]] constexpr bool is_tchar(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

/// Baggage `baggage-octet`: printable ASCII but space, '"', ',', ';' and '\'.
[[nodiscard]] constexpr bool is_baggage_octet(char c) noexcept {
  return c >= 0x21 && c <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\';
}

/// Appends `text` with every byte outside `baggage-octet`, and '%', written as
/// `%XX` (RFC 3986 2.1, uppercase hex).
void append_percent_encoded(std::string& out, std::string_view text);

/// Decodes `%XX` escapes of a baggage value into `out`, then replaces byte
/// sequences that are not UTF-8 by U+FFFD. False (and `out` unspecified) when a
/// character is not a `baggage-octet` or a '%' is not followed by two hex digits.
[[nodiscard]] bool percent_decode_value(std::string_view text, std::string& out);

/// `text` with every maximal ill-formed UTF-8 subsequence replaced by U+FFFD
/// (the Unicode standard's "best practice", as WHATWG's decoder does).
[[nodiscard]] std::string sanitize_utf8(std::string_view text);

}  // namespace ctxpool::detail
