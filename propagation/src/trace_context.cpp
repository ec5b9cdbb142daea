// traceparent and tracestate: the grammar of W3C Trace Context Level 2, rule by rule.
#include <ctxpool/trace_context.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>

#include "text.hpp"

namespace ctxpool {

namespace detail {

namespace {

/// xoshiro256** (Blackman and Vigna): fast, 256 bits of state, passes the
/// statistical test batteries; ids need unpredictability across processes,
/// which the per-thread seed from the OS entropy source gives.
class id_generator {
 public:
  id_generator() noexcept {
    std::uint64_t seed = 0;
    try {
      std::random_device device;
      seed = (std::uint64_t{device()} << 32) ^ device();
      seed ^= (std::uint64_t{device()} << 32) ^ device();
    } catch (...) {
      // No entropy source: fall back to the clock and this thread's address.
      seed =
          static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
          static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(this));
    }
    for (std::uint64_t& word : state_) word = splitmix(seed);
  }

  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  std::uint64_t state_[4];
};

}  // namespace

std::uint64_t random_u64() noexcept {
  thread_local id_generator generator;
  return generator.next();
}

}  // namespace detail

// --- traceparent ("Traceparent Header", "Versioning of traceparent") ---------

std::optional<traceparent> traceparent::parse(std::string_view text) noexcept {
  text = detail::trim_ows(text);
  // Every version's first four fields take 55 characters; shorter is invalid.
  if (text.size() < text_size) return std::nullopt;
  const int version_high = detail::hex_digit_value(text[0]);
  const int version_low = detail::hex_digit_value(text[1]);
  if ((version_high | version_low) < 0 || text[2] != '-') return std::nullopt;
  const int version = version_high << 4 | version_low;
  if (version == 0xff) return std::nullopt;  // "Version ff is forbidden"
  // Version 00 is exactly the four fields; a higher version may append fields,
  // after a dash, which are not ours to read.
  if (version == 0 && text.size() != text_size) return std::nullopt;
  if (text.size() > text_size && text[text_size] != '-') return std::nullopt;
  if (text[35] != '-' || text[52] != '-') return std::nullopt;

  traceparent result;
  const bool ids = result.trace.assign_hex(&text[3]) && result.parent.assign_hex(&text[36]);
  const int flags_high = detail::hex_digit_value(text[53]);
  const int flags_low = detail::hex_digit_value(text[54]);
  if (!ids || (flags_high | flags_low) < 0) return std::nullopt;
  // All zeros are forbidden ("trace-id", "parent-id").
  if (!result.trace.is_valid() || !result.parent.is_valid()) return std::nullopt;
  result.flags.bits =
      static_cast<std::uint8_t>((flags_high << 4 | flags_low) & trace_flags::known_bits);
  return result;
}

std::array<char, traceparent::text_size> traceparent::to_chars() const noexcept {
  std::array<char, text_size> out;
  out[0] = '0';
  out[1] = '0';
  out[2] = '-';
  trace.to_chars(&out[3]);
  out[35] = '-';
  parent.to_chars(&out[36]);
  out[52] = '-';
  constexpr const char* digits = "0123456789abcdef";
  const std::uint8_t bits =
      flags.bits & trace_flags::known_bits;  // "Vendors MUST set those to zero"
  out[53] = digits[bits >> 4];
  out[54] = digits[bits & 0xf];
  return out;
}

std::string traceparent::to_string() const {
  const std::array<char, text_size> text = to_chars();
  return std::string(text.data(), text.size());
}

// --- tracestate ("Tracestate Header") ------------------------------------------

bool tracestate::is_valid_key(std::string_view key) noexcept {
  // key = ( lcalpha / DIGIT ) 0*255 ( keychar )
  if (key.empty() || key.size() > 256 || !detail::has_class(key[0], detail::cc_tracestate_first))
    return false;
  return std::all_of(key.begin() + 1, key.end(),
                     [](char c) { return detail::has_class(c, detail::cc_tracestate_key); });
}

bool tracestate::is_valid_value(std::string_view value) noexcept {
  // value = 0*255(chr) nblk-chr ; chr = %x20 / nblk-chr ;
  // nblk-chr = %x21-2B / %x2D-3C / %x3E-7E (printable ASCII but ',' and '=')
  if (value.empty() || value.size() > 256 || value.back() == ' ') return false;
  return std::all_of(value.begin(), value.end(),
                     [](char c) { return detail::has_class(c, detail::cc_tracestate_value); });
}

namespace {

/// Calls `f(key, value)` for each member of canonical tracestate text
/// (`key=value` joined by ',' with no white space, as tracestate keeps it).
template <class F>
void for_each_member(std::string_view text, F&& f) {
  if (text.empty()) return;
  detail::for_each_list_item(text, [&](std::string_view member) {
    const std::size_t eq = member.find('=');
    f(member.substr(0, eq), member.substr(eq + 1));
  });
}

/// Appends one member to canonical text being built in `out`.
void append_member(char* out, std::uint32_t& size, std::string_view key,
                   std::string_view value) noexcept {
  if (size != 0) out[size++] = ',';
  std::memcpy(out + size, key.data(), key.size());
  size += static_cast<std::uint32_t>(key.size());
  out[size++] = '=';
  std::memcpy(out + size, value.data(), value.size());
  size += static_cast<std::uint32_t>(value.size());
}

}  // namespace

tracestate tracestate::parse(std::span<const std::string_view> fields) {
  std::size_t capacity = 0;
  for (std::string_view field : fields) capacity += field.size() + 1;  // + the ',' joining fields
  if (capacity == fields.size()) return tracestate();
  // Canonical text is never longer than its input and the commas joining its
  // fields: one allocation, written in place by one pass over each field that
  // splits and validates together.
  detail::text_ref ref(detail::make_text_rep<detail::text_rep>(capacity));
  detail::text_rep& rep = *ref.get();
  // The keys kept so far, to refuse duplicates; left uninitialised (a plain
  // aggregate), since zeroing 32 string_views cost as much as parsing 4 members.
  struct key_ref {
    const char* data;
    std::size_t size;
  };
  key_ref keys[max_members];
  std::size_t members = 0;
  for (std::string_view field : fields) {
    const char* p = field.data();
    const char* const end = p + field.size();
    for (;;) {
      while (p != end && detail::is_ows(*p)) ++p;
      if (p == end) break;
      if (*p == ',') {  // "Empty and whitespace-only list members are allowed"
        ++p;
        continue;
      }
      // key = ( lcalpha / DIGIT ) 0*255 ( keychar )
      const char* const key_begin = p;
      if (!detail::has_class(*p, detail::cc_tracestate_first)) return tracestate();
      ++p;
      while (p != end && detail::has_class(*p, detail::cc_tracestate_key)) ++p;
      const auto key = std::string_view(key_begin, static_cast<std::size_t>(p - key_begin));
      if (key.size() > 256 || p == end || *p != '=') return tracestate();
      // value = 0*255(chr) nblk-chr; white space after it belongs to the list.
      const char* const value_begin = ++p;
      bool tab = false;
      while (p != end && *p != ',') {
        if (*p == '\t') {
          tab = true;
        } else if (!detail::has_class(*p, detail::cc_tracestate_value)) {
          return tracestate();
        }
        ++p;
      }
      // Leading spaces are part of the value; trailing ones are list white space.
      auto value = std::string_view(value_begin, static_cast<std::size_t>(p - value_begin));
      while (!value.empty() && detail::is_ows(value.back())) value.remove_suffix(1);
      if (value.empty() || value.size() > 256) return tracestate();
      if (tab && value.find('\t') != std::string_view::npos) return tracestate();
      // One bad member makes the header unparsable, and a header that cannot
      // be parsed is discarded whole (the test suite's strict level checks this).
      if (++members > max_members) return tracestate();
      bool duplicate = false;
      for (std::size_t i = 0; i < rep.items && !duplicate; ++i) {
        duplicate = std::string_view(keys[i].data, keys[i].size) == key;
      }
      if (!duplicate) {  // a duplicate: the left-most stays
        keys[rep.items] = key_ref{key.data(), key.size()};
        append_member(rep.chars, rep.size, key, value);
        ++rep.items;
      }
    }
  }
  if (rep.items == 0) return tracestate();
  return tracestate(std::move(ref));
}

std::optional<std::string_view> tracestate::get(std::string_view key) const noexcept {
  std::optional<std::string_view> result;
  for_each_member(text(), [&](std::string_view k, std::string_view v) {
    if (!result && k == key) result = v;
  });
  return result;
}

std::vector<tracestate::member> tracestate::members() const {
  std::vector<member> result;
  result.reserve(size());
  for_each_member(text(), [&](std::string_view k, std::string_view v) {
    result.push_back(member{k, v});
  });
  return result;
}

void tracestate::set(std::string_view key, std::string_view value) {
  if (!is_valid_key(key)) {
    throw invalid_header_value("tracestate key '" + std::string(key) +
                               "' is invalid: use 1 to 256 of a-z 0-9 _ - * / @, starting "
                               "with a letter or digit");
  }
  if (!is_valid_value(value)) {
    throw invalid_header_value("tracestate value for '" + std::string(key) +
                               "' is invalid: use 1 to 256 printable ASCII characters other "
                               "than ',' and '=', not ending with a space");
  }
  const std::string_view old = text();
  detail::text_ref ref(
      detail::make_text_rep<detail::text_rep>(key.size() + 1 + value.size() + 1 + old.size()));
  detail::text_rep& rep = *ref.get();
  append_member(rep.chars, rep.size, key, value);
  rep.items = 1;
  for_each_member(old, [&](std::string_view k, std::string_view v) {
    // The right-most members go when there would be more than 32.
    if (k == key || rep.items == max_members) return;
    append_member(rep.chars, rep.size, k, v);
    ++rep.items;
  });
  rep_ = std::move(ref);
}

bool tracestate::erase(std::string_view key) {
  if (!get(key)) return false;
  if (size() == 1) {
    rep_ = detail::text_ref();
    return true;
  }
  const std::string_view old = text();
  detail::text_ref ref(detail::make_text_rep<detail::text_rep>(old.size()));
  detail::text_rep& rep = *ref.get();
  for_each_member(old, [&](std::string_view k, std::string_view v) {
    if (k == key) return;
    append_member(rep.chars, rep.size, k, v);
    ++rep.items;
  });
  rep_ = std::move(ref);
  return true;
}

std::string tracestate::format(std::size_t max_length) const {
  const std::string_view all = text();
  if (all.size() <= max_length) return std::string(all);
  std::array<member, max_members> list;
  std::array<bool, max_members> kept{};
  std::size_t n = 0;
  for_each_member(all, [&](std::string_view k, std::string_view v) { list[n++] = member{k, v}; });
  const auto length_of = [&](std::size_t i) {
    return list[i].key.size() + 1 + list[i].value.size();
  };
  std::size_t length = all.size();  // joined length of the kept members
  std::size_t count = n;
  for (std::size_t i = 0; i < n; ++i) kept[i] = true;
  const auto drop = [&](std::size_t i) {
    kept[i] = false;
    length -= length_of(i) + (count > 1 ? 1 : 0);
    --count;
  };
  // "Entries larger than 128 characters long SHOULD be removed first. Then
  // entries SHOULD be removed starting from the end of tracestate."
  for (std::size_t i = n; i-- > 0 && length > max_length;) {
    if (length_of(i) > long_member) drop(i);
  }
  for (std::size_t i = n; i-- > 0 && length > max_length;) {
    if (kept[i]) drop(i);
  }
  std::string out;
  out.reserve(length);
  for (std::size_t i = 0; i < n; ++i) {
    if (!kept[i]) continue;
    if (!out.empty()) out += ',';
    out += list[i].key;
    out += '=';
    out += list[i].value;
  }
  return out;
}

// --- trace_context -------------------------------------------------------------

trace_context trace_context::start_new() {
  return trace_context{trace_id::random(), span_id::random(), trace_flags{trace_flags::random_bit},
                       tracestate(), false};
}

}  // namespace ctxpool
