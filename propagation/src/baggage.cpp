// baggage: the W3C Baggage header grammar, percent-encoding and limits.
#include <ctxpool/baggage.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "text.hpp"

namespace ctxpool {

namespace detail {

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

/// Where canonical text goes: counted first (to size the one allocation), then written.
class text_sink {
 public:
  explicit text_sink(char* out = nullptr) noexcept : out_(out) {}
  void put(char c) noexcept {
    if (out_ != nullptr) out_[size_] = c;
    ++size_;
  }
  void put(std::string_view text) noexcept {
    if (out_ != nullptr) std::memcpy(out_ + size_, text.data(), text.size());
    size_ += text.size();
  }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  void rewind(std::size_t size) noexcept { size_ = size; }

 private:
  char* out_;
  std::size_t size_ = 0;
};

void put_encoded(text_sink& sink, std::string_view text) {
  constexpr const char* digits = "0123456789ABCDEF";
  for (char c : text) {
    if (detail::is_baggage_octet(c) && c != '%') {
      sink.put(c);
    } else {
      const auto byte = static_cast<unsigned char>(c);
      sink.put('%');
      sink.put(digits[byte >> 4]);
      sink.put(digits[byte & 0xf]);
    }
  }
}

/// Reads received baggage text and writes it in canonical form, in one pass:
/// each member split, validated and (where it has '%') decoded and encoded
/// again; a member that breaks the grammar is rewound and skipped.
class canonical_reader {
 public:
  canonical_reader(text_sink& sink, std::string_view field) noexcept
      : sink_(sink), p_(field.data()), end_(field.data() + field.size()) {}

  /// Appends the field's valid members; returns how many.
  std::size_t read_members(std::size_t kept_before) {
    std::size_t kept = 0;
    for (;;) {
      skip_ows();
      if (p_ == end_) return kept;
      if (*p_ == ',') {  // what combining an empty field leaves
        ++p_;
        continue;
      }
      const std::size_t mark = sink_.size();
      if (kept_before + kept != 0) sink_.put(',');
      // list-member = key OWS "=" OWS value *( OWS ";" OWS property )
      bool valid = read_pair(true);
      skip_ows();
      while (valid && p_ != end_ && *p_ == ';') {
        ++p_;
        sink_.put(';');
        valid = read_pair(false);  // property = key OWS "=" OWS value / key OWS
        skip_ows();
      }
      if (valid && (p_ == end_ || *p_ == ',')) {
        ++kept;
      } else {
        // An invalid member is dropped on its own ("Mutating baggage": the
        // receiver "MAY remove an offending list-member before propagating the rest").
        sink_.rewind(mark);
        while (p_ != end_ && *p_ != ',') ++p_;
      }
      if (p_ != end_) ++p_;  // the ','
    }
  }

 private:
  void skip_ows() noexcept {
    while (p_ != end_ && detail::is_ows(*p_)) ++p_;
  }

  bool read_pair(bool value_required) {
    skip_ows();
    const char* const key_begin = p_;
    while (p_ != end_ && detail::is_tchar(*p_)) ++p_;
    if (p_ == key_begin) return false;
    sink_.put(std::string_view(key_begin, static_cast<std::size_t>(p_ - key_begin)));
    skip_ows();
    if (p_ == end_ || *p_ != '=') return !value_required;
    ++p_;
    skip_ows();
    const char* const value_begin = p_;
    bool escaped = false;
    while (p_ != end_ && detail::is_baggage_octet(*p_)) {
      escaped = escaped || *p_ == '%';
      ++p_;
    }
    sink_.put('=');
    const auto value = std::string_view(value_begin, static_cast<std::size_t>(p_ - value_begin));
    if (!escaped) {  // its own canonical form: the common case, no decoding
      sink_.put(value);
      return true;
    }
    std::string decoded;
    if (!detail::percent_decode_value(value, decoded)) return false;
    put_encoded(sink_, decoded);
    return true;
  }

  text_sink& sink_;
  const char* p_;
  const char* end_;
};

/// The canonical text of received fields; returns the number of members kept.
std::size_t put_canonical_fields(text_sink& sink, std::span<const std::string_view> fields) {
  std::size_t members = 0;
  for (std::string_view field : fields)
    members += canonical_reader(sink, field).read_members(members);
  return members;
}

void put_entry(text_sink& sink, const baggage_entry& entry) {
  sink.put(entry.key);
  sink.put('=');
  put_encoded(sink, entry.value);
  for (const baggage_property& property : entry.properties) {
    sink.put(';');
    sink.put(property.key);
    if (property.value) {
      sink.put('=');
      put_encoded(sink, *property.value);
    }
  }
}

/// Decodes one canonical member (valid by construction).
baggage_entry decode_member(std::string_view member) {
  baggage_entry entry;
  bool first = true;
  detail::for_each_list_item(
      member,
      [&](std::string_view part) {
        const std::size_t eq = part.find('=');
        const std::string_view key = part.substr(0, eq);
        if (first) {
          first = false;
          entry.key = std::string(key);
          (void)detail::percent_decode_value(part.substr(eq + 1), entry.value);
          return;
        }
        baggage_property property{std::string(key), std::nullopt};
        if (eq != std::string_view::npos) {
          property.value.emplace();
          (void)detail::percent_decode_value(part.substr(eq + 1), *property.value);
        }
        entry.properties.push_back(std::move(property));
      },
      ';');
  return entry;
}

}  // namespace

/// The canonical text (in text_rep) and, once asked for, its decoded entries.
struct baggage::rep : detail::text_rep {
  std::once_flag decoded;
  std::vector<baggage_entry> entries;
};

bool baggage::is_valid_key(std::string_view key) noexcept { return is_token(key); }

baggage baggage::parse(std::span<const std::string_view> fields) {
  std::size_t input = 0;
  for (std::string_view field : fields) input += field.size();
  if (input == 0) return baggage();
  // Canonical text is at most 3 times its input (an invalid octet "%FF" becomes
  // U+FFFD, "%EF%BF%BD") plus the commas joining the fields: written in one
  // pass to a buffer on the stack when that fits, then copied into the one
  // allocation that keeps it.
  const std::size_t bound = 3 * input + fields.size();
  std::array<char, 2048> local;
  std::string large;
  char* buffer = local.data();
  if (bound > local.size()) {
    large.resize(bound);
    buffer = large.data();
  }
  text_sink sink(buffer);
  const std::size_t members = put_canonical_fields(sink, fields);
  if (members == 0) return baggage();
  detail::text_ref ref(detail::make_text_rep<rep>(sink.size()));
  std::memcpy(ref.get()->chars, buffer, sink.size());
  ref.get()->size = static_cast<std::uint32_t>(sink.size());
  ref.get()->items = static_cast<std::uint32_t>(members);
  return baggage(std::move(ref));
}

baggage baggage::from_entries(std::vector<baggage_entry> entries) {
  if (entries.empty()) return baggage();
  text_sink counter;
  for (const baggage_entry& entry : entries) {
    if (counter.size() != 0) counter.put(',');
    put_entry(counter, entry);
  }
  detail::text_ref ref(detail::make_text_rep<rep>(counter.size()));
  auto& r = static_cast<rep&>(*ref.get());
  text_sink writer(r.chars);
  for (const baggage_entry& entry : entries) {
    if (writer.size() != 0) writer.put(',');
    put_entry(writer, entry);
  }
  r.size = static_cast<std::uint32_t>(writer.size());
  r.items = static_cast<std::uint32_t>(entries.size());
  r.entries = std::move(entries);
  std::call_once(r.decoded, [] {});  // already decoded
  return baggage(std::move(ref));
}

std::span<const baggage_entry> baggage::entries() const {
  if (rep_.get() == nullptr) return {};
  auto& r = static_cast<rep&>(*rep_.get());
  std::call_once(r.decoded, [&r] {
    r.entries.reserve(r.items);
    detail::for_each_list_item(
        r.text(), [&r](std::string_view member) { r.entries.push_back(decode_member(member)); });
  });
  return r.entries;
}

const baggage_entry* baggage::find(std::string_view key) const {
  for (const baggage_entry& entry : entries()) {
    if (entry.key == key) return &entry;
  }
  return nullptr;
}

std::optional<std::string_view> baggage::get(std::string_view key) const {
  const baggage_entry* entry = find(key);
  if (entry == nullptr) return std::nullopt;
  return std::string_view(entry->value);
}

void baggage::set(std::string_view key, std::string_view value,
                  std::vector<baggage_property> properties) {
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
  const std::span<const baggage_entry> current = entries();
  std::vector<baggage_entry> updated;
  updated.reserve(current.size() + 1);
  bool replaced = false;
  for (const baggage_entry& e : current) {
    if (e.key != key) {
      updated.push_back(e);
    } else if (!replaced) {  // the first in place; later duplicates go
      // NOLINTNEXTLINE(bugprone-use-after-move): moved once, `replaced` guards it
      updated.push_back(std::move(entry));
      replaced = true;
    }
  }
  if (!replaced) updated.push_back(std::move(entry));
  *this = from_entries(std::move(updated));
}

std::size_t baggage::erase(std::string_view key) {
  const std::span<const baggage_entry> current = entries();
  std::vector<baggage_entry> kept;
  for (const baggage_entry& e : current) {
    if (e.key != key) kept.push_back(e);
  }
  const std::size_t removed = current.size() - kept.size();
  if (removed != 0) *this = from_entries(std::move(kept));
  return removed;
}

std::string baggage::format(std::size_t max_bytes_out) const {
  const std::string_view all = text();
  if (all.size() <= max_bytes_out && size() <= max_members) return std::string(all);
  std::string out;
  std::size_t members = 0;
  detail::for_each_list_item(all, [&](std::string_view member) {
    if (members == max_members) return;
    const std::size_t needed = member.size() + (out.empty() ? 0 : 1);
    if (out.size() + needed > max_bytes_out) return;  // never a partial member
    if (!out.empty()) out += ',';
    out += member;
    ++members;
  });
  return out;
}

}  // namespace ctxpool
