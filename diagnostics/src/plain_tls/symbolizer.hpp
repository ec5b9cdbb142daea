// Code addresses to functions, inline frames and source lines (elfutils
// libdwfl/libdw), cached per address. Never called from a signal handler.
//
// @par Thread safety
// All members lock internally; one object serves every thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace ctxpool::diagnostics::detail::plain_tls {

/// What the symbols and debug information say about one code address; the
/// classifier turns it into the finding's `code_location`.
struct symbol_info {
  std::uintptr_t function_begin = 0;  ///< the enclosing (out-of-line) function's symbol
  std::uintptr_t function_end = 0;    ///< 0 when no symbol covers the address
  std::string symbol;                 ///< its demangled name; empty if none
  bool has_debug_info = false;        ///< a function's DWARF covers the address
  /// Demangled names of the inline frames at the address, innermost first,
  /// ending with the out-of-line function (empty without debug information).
  std::vector<std::string> frames;
  /// The innermost frame that is not the standard library's or ctxpool's,
  /// with the source line inside it (a call line when a library function is
  /// inlined there); the symbol alone when there is no debug information.
  std::string user_function;
  std::string file;
  unsigned line = 0;
  /// The classifier's view of each name -- `frames`, or `symbol` alone when
  /// there are none -- worked out once per address rather than on every
  /// classified access: bit i set when name i is assignment-like
  /// (is_assignment_like), ...
  std::uint64_t assignment_like = 0;
  /// ... and when it is the program's own (not empty, not is_runtime_name).
  std::uint64_t own_code = 0;
};

class symbolizer {
 public:
  symbolizer();
  ~symbolizer();
  symbolizer(const symbolizer&) = delete;
  symbolizer& operator=(const symbolizer&) = delete;

  /// Looks `pc` up (rescanning the process's modules once if none covers it).
  /// The entry is cached for the life of the symbolizer and never changes
  /// (the map's nodes do not move), so the reference stays valid without the
  /// lock: a first access classified on every task copies no strings.
  const symbol_info& lookup(std::uintptr_t pc);

 private:
  struct impl;
  std::mutex mutex_;
  std::unique_ptr<impl> impl_;
  std::unordered_map<std::uintptr_t, symbol_info> cache_;
};

/// The process-wide symbolizer (built on first use, never destroyed).
symbolizer& the_symbolizer();

}  // namespace ctxpool::diagnostics::detail::plain_tls
