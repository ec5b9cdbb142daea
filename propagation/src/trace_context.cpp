// traceparent and tracestate: the grammar of W3C Trace Context Level 2, rule by rule.
#include <ctxpool/trace_context.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
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
      seed = static_cast<std::uint64_t>(
                 std::chrono::steady_clock::now().time_since_epoch().count()) ^
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

  const std::optional<trace_id> trace = trace_id::from_hex(text.substr(3, trace_id::hex_size));
  const std::optional<span_id> parent = span_id::from_hex(text.substr(36, span_id::hex_size));
  const int flags_high = detail::hex_digit_value(text[53]);
  const int flags_low = detail::hex_digit_value(text[54]);
  if (!trace || !parent || (flags_high | flags_low) < 0) return std::nullopt;
  if (!trace->is_valid() || !parent->is_valid()) return std::nullopt;  // all zeros forbidden
  const auto flags = static_cast<std::uint8_t>((flags_high << 4 | flags_low) & trace_flags::known_bits);
  return traceparent{*trace, *parent, trace_flags{flags}};
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
  const std::uint8_t bits = flags.bits & trace_flags::known_bits;  // "Vendors MUST set those to zero"
  out[53] = digits[bits >> 4];
  out[54] = digits[bits & 0xf];
  return out;
}

std::string traceparent::to_string() const {
  const std::array<char, text_size> text = to_chars();
  return std::string(text.data(), text.size());
}

// --- tracestate ("Tracestate Header") ------------------------------------------

namespace {

[[nodiscard]] constexpr bool is_lcalpha_or_digit(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

}  // namespace

bool tracestate::is_valid_key(std::string_view key) noexcept {
  // key = ( lcalpha / DIGIT ) 0*255 ( keychar )
  if (key.empty() || key.size() > 256 || !is_lcalpha_or_digit(key[0])) return false;
  return std::all_of(key.begin() + 1, key.end(), [](char c) {
    return is_lcalpha_or_digit(c) || c == '_' || c == '-' || c == '*' || c == '/' || c == '@';
  });
}

bool tracestate::is_valid_value(std::string_view value) noexcept {
  // value = 0*255(chr) nblk-chr ; chr = %x20 / nblk-chr ;
  // nblk-chr = %x21-2B / %x2D-3C / %x3E-7E (printable ASCII but ',' and '=')
  if (value.empty() || value.size() > 256 || value.back() == ' ') return false;
  return std::all_of(value.begin(), value.end(),
                     [](char c) { return c >= 0x20 && c <= 0x7e && c != ',' && c != '='; });
}

tracestate tracestate::parse(std::span<const std::string_view> fields) {
  entries parsed;
  std::size_t members = 0;
  for (std::string_view field : fields) {
    bool invalid = false;
    detail::for_each_list_item(field, [&](std::string_view item) {
      if (invalid) return;
      item = detail::trim_ows(item);
      if (item.empty()) return;  // "Empty and whitespace-only list members are allowed"
      const std::size_t eq = item.find('=');
      if (eq == std::string_view::npos) {
        invalid = true;
        return;
      }
      const std::string_view key = item.substr(0, eq);
      const std::string_view value = item.substr(eq + 1);
      if (!is_valid_key(key) || !is_valid_value(value) || ++members > max_members) {
        invalid = true;
        return;
      }
      const bool duplicate = std::any_of(parsed.begin(), parsed.end(),
                                         [&](const entry& e) { return e.key == key; });
      if (!duplicate) parsed.push_back(entry{std::string(key), std::string(value)});
    });
    // One bad member makes the header unparsable, and a header that cannot be
    // parsed is discarded whole (the test suite's strict level checks this).
    if (invalid) return tracestate();
  }
  tracestate result;
  if (!parsed.empty()) result.data_ = std::make_shared<const entries>(std::move(parsed));
  return result;
}

std::optional<std::string_view> tracestate::get(std::string_view key) const noexcept {
  if (!data_) return std::nullopt;
  for (const entry& e : *data_) {
    if (e.key == key) return std::string_view(e.value);
  }
  return std::nullopt;
}

std::vector<tracestate::member> tracestate::members() const {
  std::vector<member> result;
  if (data_) {
    result.reserve(data_->size());
    for (const entry& e : *data_) result.push_back(member{e.key, e.value});
  }
  return result;
}

tracestate::entries& tracestate::mutable_entries() {
  if (!data_) {
    data_ = std::make_shared<const entries>();
  } else if (data_.use_count() > 1) {
    // Another copy shares these entries: modify a copy of our own. A count of
    // one cannot rise concurrently, since only this object holds a reference.
    data_ = std::make_shared<const entries>(*data_);
  }
  return const_cast<entries&>(*data_);
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
  entries& list = mutable_entries();
  std::erase_if(list, [&](const entry& e) { return e.key == key; });
  list.insert(list.begin(), entry{std::string(key), std::string(value)});
  if (list.size() > max_members) list.pop_back();  // the right-most goes
}

bool tracestate::erase(std::string_view key) {
  if (!get(key)) return false;
  entries& list = mutable_entries();
  std::erase_if(list, [&](const entry& e) { return e.key == key; });
  if (list.empty()) data_.reset();
  return true;
}

std::string tracestate::format(std::size_t max_length) const {
  if (!data_) return {};
  const entries& list = *data_;
  std::array<bool, max_members + 1> kept{};
  std::size_t length = 0;
  std::size_t count = 0;
  for (std::size_t i = 0; i < list.size(); ++i) {
    kept[i] = true;
    length += list[i].key.size() + 1 + list[i].value.size();
    ++count;
  }
  const auto joined = [&] { return count == 0 ? 0 : length + count - 1; };
  const auto drop = [&](std::size_t i) {
    kept[i] = false;
    length -= list[i].key.size() + 1 + list[i].value.size();
    --count;
  };
  // "Entries larger than 128 characters long SHOULD be removed first. Then
  // entries SHOULD be removed starting from the end of tracestate."
  for (std::size_t i = list.size(); i-- > 0 && joined() > max_length;) {
    if (list[i].key.size() + 1 + list[i].value.size() > long_member) drop(i);
  }
  for (std::size_t i = list.size(); i-- > 0 && joined() > max_length;) {
    if (kept[i]) drop(i);
  }
  std::string text;
  text.reserve(joined());
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (!kept[i]) continue;
    if (!text.empty()) text += ',';
    text += list[i].key;
    text += '=';
    text += list[i].value;
  }
  return text;
}

bool operator==(const tracestate& a, const tracestate& b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.data_ == b.data_) return true;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto& x = (*a.data_)[i];
    const auto& y = (*b.data_)[i];
    if (x.key != y.key || x.value != y.value) return false;
  }
  return true;
}

// --- trace_context -------------------------------------------------------------

trace_context trace_context::start_new() {
  return trace_context{trace_id::random(), span_id::random(), trace_flags{trace_flags::random_bit},
                       tracestate(), false};
}

}  // namespace ctxpool
