// baggage: the W3C Baggage header grammar, percent-encoding and limits.
#include <ctxpool/baggage.hpp>

#include <algorithm>
#include <cstdint>

#include "text.hpp"

namespace ctxpool {

namespace detail {

void append_percent_encoded(std::string& out, std::string_view text) {
  constexpr const char* digits = "0123456789ABCDEF";
  for (char c : text) {
    if (is_baggage_octet(c) && c != '%') {
      out += c;
    } else {
      const auto byte = static_cast<unsigned char>(c);
      out += '%';
      out += digits[byte >> 4];
      out += digits[byte & 0xf];
    }
  }
}

namespace {

[[nodiscard]] int any_hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Length of the well-formed UTF-8 sequence at the start of `s`, or, when it
/// is ill-formed, minus the length of its maximal ill-formed prefix (at least 1).
/// Table 3-7 of the Unicode standard: the second byte's range depends on the first.
[[nodiscard]] int utf8_sequence(std::string_view s) noexcept {
  const auto b0 = static_cast<unsigned char>(s[0]);
  if (b0 < 0x80) return 1;
  int length = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    length = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    length = 3;
    if (b0 == 0xe0) low = 0xa0;
    if (b0 == 0xed) high = 0x9f;  // no surrogates
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    length = 4;
    if (b0 == 0xf0) low = 0x90;
    if (b0 == 0xf4) high = 0x8f;  // nothing above U+10FFFF
  } else {
    return -1;
  }
  for (int i = 1; i < length; ++i) {
    if (static_cast<std::size_t>(i) >= s.size()) return -i;
    const auto b = static_cast<unsigned char>(s[static_cast<std::size_t>(i)]);
    if (b < low || b > high) return -i;
    low = 0x80;
    high = 0xbf;
  }
  return length;
}

}  // namespace

std::string sanitize_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const int n = utf8_sequence(text);
    if (n > 0) {
      out.append(text.substr(0, static_cast<std::size_t>(n)));
      text.remove_prefix(static_cast<std::size_t>(n));
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      text.remove_prefix(static_cast<std::size_t>(-n));
    }
  }
  return out;
}

bool percent_decode_value(std::string_view text, std::string& out) {
  out.clear();
  bool ascii = true;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (!is_baggage_octet(c)) return false;
    if (c != '%') {
      out += c;
      continue;
    }
    const int high = i + 1 < text.size() ? any_hex_value(text[i + 1]) : -1;
    const int low = i + 2 < text.size() ? any_hex_value(text[i + 2]) : -1;
    if ((high | low) < 0) return false;
    const auto byte = static_cast<char>(high << 4 | low);
    ascii = ascii && static_cast<unsigned char>(byte) < 0x80;
    out += byte;
    i += 2;
  }
  if (!ascii) out = sanitize_utf8(out);
  return true;
}

}  // namespace detail

namespace {

[[nodiscard]] bool is_token(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), detail::is_tchar);
}

/// One `list-member` (already trimmed, not empty), or false if it breaks the grammar:
/// list-member = key OWS "=" OWS value *( OWS ";" OWS property )
/// property    = key OWS "=" OWS value / key OWS
[[nodiscard]] bool parse_member(std::string_view text, baggage_entry& entry) {
  bool first = true;
  bool valid = true;
  detail::for_each_list_item(
      text,
      [&](std::string_view part) {
        if (!valid) return;
        const std::size_t eq = part.find('=');
        const std::string_view key = detail::trim_ows(part.substr(0, eq));
        if (!is_token(key)) {
          valid = false;
          return;
        }
        if (first) {
          first = false;
          if (eq == std::string_view::npos) {
            valid = false;
            return;
          }
          entry.key = std::string(key);
          valid = detail::percent_decode_value(detail::trim_ows(part.substr(eq + 1)), entry.value);
          return;
        }
        baggage_property property{std::string(key), std::nullopt};
        if (eq != std::string_view::npos) {
          property.value.emplace();
          valid = detail::percent_decode_value(detail::trim_ows(part.substr(eq + 1)), *property.value);
        }
        entry.properties.push_back(std::move(property));
      },
      ';');
  return valid;
}

void append_member(std::string& out, const baggage_entry& entry) {
  out += entry.key;
  out += '=';
  detail::append_percent_encoded(out, entry.value);
  for (const baggage_property& property : entry.properties) {
    out += ';';
    out += property.key;
    if (property.value) {
      out += '=';
      detail::append_percent_encoded(out, *property.value);
    }
  }
}

}  // namespace

bool baggage::is_valid_key(std::string_view key) noexcept { return is_token(key); }

baggage baggage::parse(std::span<const std::string_view> fields) {
  list entries;
  for (std::string_view field : fields) {
    detail::for_each_list_item(field, [&](std::string_view item) {
      item = detail::trim_ows(item);
      if (item.empty()) return;  // what combining an empty field leaves
      baggage_entry entry;
      // An invalid member is dropped on its own ("Mutating baggage": the
      // receiver "MAY remove an offending list-member before propagating the rest").
      if (parse_member(item, entry)) entries.push_back(std::move(entry));
    });
  }
  baggage result;
  if (!entries.empty()) result.data_ = std::make_shared<const list>(std::move(entries));
  return result;
}

const baggage_entry* baggage::find(std::string_view key) const noexcept {
  if (!data_) return nullptr;
  for (const baggage_entry& entry : *data_) {
    if (entry.key == key) return &entry;
  }
  return nullptr;
}

std::optional<std::string_view> baggage::get(std::string_view key) const noexcept {
  const baggage_entry* entry = find(key);
  if (entry == nullptr) return std::nullopt;
  return std::string_view(entry->value);
}

baggage::list& baggage::mutable_entries() {
  if (!data_) {
    data_ = std::make_shared<const list>();
  } else if (data_.use_count() > 1) {
    // Shared with another copy: modify our own. A count of one cannot rise
    // concurrently, since only this object holds a reference.
    data_ = std::make_shared<const list>(*data_);
  }
  return const_cast<list&>(*data_);
}

void baggage::set(std::string_view key, std::string_view value, std::vector<baggage_property> properties) {
  const auto check = [](std::string_view k) {
    if (!is_token(k)) {
      throw invalid_header_value("baggage key '" + std::string(k) +
                                 "' is not an RFC 7230 token: use letters, digits and "
                                 "!#$%&'*+-.^_`|~, no spaces");
    }
  };
  check(key);
  for (baggage_property& property : properties) {
    check(property.key);
    // Values are UTF-8 text: what could not be sent as such is replaced now,
    // so that what is sent reads back equal.
    if (property.value) *property.value = detail::sanitize_utf8(*property.value);
  }
  baggage_entry entry{std::string(key), detail::sanitize_utf8(value), std::move(properties)};
  list& entries = mutable_entries();
  const auto first = std::find_if(entries.begin(), entries.end(),
                                  [&](const baggage_entry& e) { return e.key == key; });
  if (first == entries.end()) {
    entries.push_back(std::move(entry));
    return;
  }
  *first = std::move(entry);
  entries.erase(std::remove_if(first + 1, entries.end(),
                               [&](const baggage_entry& e) { return e.key == key; }),
                entries.end());
}

std::size_t baggage::erase(std::string_view key) {
  if (find(key) == nullptr) return 0;
  list& entries = mutable_entries();
  const std::size_t removed =
      std::erase_if(entries, [&](const baggage_entry& e) { return e.key == key; });
  if (entries.empty()) data_.reset();
  return removed;
}

std::string baggage::format(std::size_t max_bytes_out) const {
  std::string out;
  if (!data_) return out;
  std::string member;
  std::size_t members = 0;
  for (const baggage_entry& entry : *data_) {
    if (members == max_members) break;
    member.clear();
    append_member(member, entry);
    const std::size_t needed = member.size() + (out.empty() ? 0 : 1);
    if (out.size() + needed > max_bytes_out) continue;  // never a partial member
    if (!out.empty()) out += ',';
    out += member;
    ++members;
  }
  return out;
}

bool operator==(const baggage& a, const baggage& b) noexcept {
  if (a.data_ == b.data_) return true;
  const auto x = a.entries();
  const auto y = b.entries();
  return std::equal(x.begin(), x.end(), y.begin(), y.end());
}

}  // namespace ctxpool
