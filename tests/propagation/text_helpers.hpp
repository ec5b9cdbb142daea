// Test helpers shared by the propagation suites: strings of a given length
// and numbered names.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace propagation_test {

inline std::string repeat(char c, std::size_t n) { return std::string(n, c); }

/// prefix + number, zero-padded to `width` digits. (Built with append: g++ 12
/// warns falsely (-Wrestrict) on "literal" + std::to_string(i).)
inline std::string numbered(std::string_view prefix, int i, std::size_t width = 1) {
  std::string digits = std::to_string(i);
  std::string out(prefix);
  if (digits.size() < width) out.append(width - digits.size(), '0');
  out += digits;
  return out;
}

}  // namespace propagation_test
