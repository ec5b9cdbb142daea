// Read or write? The accessing instruction decoded with capstone, the inline
// frames from libdw (see access_classifier.hpp for the rule).
#include "access_classifier.hpp"

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "symbolizer.hpp"
#include "tls_discovery.hpp"

#if defined(__x86_64__)
#include <capstone/capstone.h>
#endif

namespace ctxpool::diagnostics::detail::plain_tls {

namespace {

/// "std::string::operator=(char const*)" -> "operator=";
/// "std::string::_M_construct<char const*>(...)" -> "_M_construct".
std::string_view unqualified(std::string_view name) noexcept {
  // Drop a trailing cv/ref qualifier and the parameter list.
  while (!name.empty() && name.back() != ')' &&
         (name.back() == ' ' || std::isalpha(static_cast<unsigned char>(name.back())) ||
          name.back() == '&')) {
    name.remove_suffix(1);
  }
  if (!name.empty() && name.back() == ')') {
    int depth = 0;
    std::size_t i = name.size();
    while (i > 0) {
      char c = name[--i];
      if (c == ')') ++depth;
      if (c == '(' && --depth == 0) break;
    }
    name = name.substr(0, i);
  }
  if (!name.empty() && name.back() == '>' && !name.ends_with("operator>") &&
      !name.ends_with("operator>>")) {
    int depth = 0;
    std::size_t i = name.size();
    while (i > 0) {
      char c = name[--i];
      if (c == '>') ++depth;
      if (c == '<' && --depth == 0) break;
    }
    name = name.substr(0, i);
  }
  if (std::size_t at = name.rfind("::"); at != std::string_view::npos) name = name.substr(at + 2);
  return name;
}

struct decoded {
  bool found = false;
  bool reads = false;
  bool writes = false;
  std::uintptr_t pc = 0;  // the instruction
};

#if defined(__x86_64__)
decoded decode_one(csh handle, cs_insn* insn, std::uintptr_t at, std::uintptr_t end_expected) {
  decoded d;
  const auto* code = reinterpret_cast<const std::uint8_t*>(at);
  std::size_t size = 16;
  std::uint64_t address = at;
  if (!cs_disasm_iter(handle, &code, &size, &address, insn)) return d;
  if (end_expected != 0 && at + insn->size != end_expected) return d;
  d.found = true;
  d.pc = at;
  if (insn->id == X86_INS_LEA) return d;
  const cs_x86& x86 = insn->detail->x86;
  for (std::uint8_t i = 0; i < x86.op_count; ++i) {
    if (x86.operands[i].type != X86_OP_MEM) continue;
    d.reads = d.reads || (x86.operands[i].access & CS_AC_READ) != 0;
    d.writes = d.writes || (x86.operands[i].access & CS_AC_WRITE) != 0;
  }
  return d;
}

/// The instruction at `insn_pc`, or the one that ends at `pc_after` within
/// [function_begin, pc_after).
decoded decode_access(const watch_hit& hit, const symbol_info& where) {
  csh handle = 0;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &handle) != CS_ERR_OK) return {};
  cs_option(handle, CS_OPT_DETAIL, CS_OPT_ON);
  cs_insn* insn = cs_malloc(handle);
  decoded d;
  if (hit.insn_pc != 0) {
    d = decode_one(handle, insn, hit.insn_pc, 0);
  } else if (where.function_begin != 0 && where.function_begin < hit.pc_after) {
    const auto* code = reinterpret_cast<const std::uint8_t*>(where.function_begin);
    std::size_t size = hit.pc_after - where.function_begin;
    std::uint64_t address = where.function_begin;
    std::uintptr_t start = where.function_begin;
    while (cs_disasm_iter(handle, &code, &size, &address, insn)) {
      if (address == hit.pc_after) {
        d = decode_one(handle, insn, start, hit.pc_after);
        break;
      }
      start = static_cast<std::uintptr_t>(address);
    }
  }
  if (!d.found && hit.insn_pc == 0) {
    // No symbol (or padding confused the walk): the longest instruction with a
    // memory operand that ends exactly at the trap.
    for (std::uintptr_t back = 15; back > 0 && !d.found; --back) {
      decoded c = decode_one(handle, insn, hit.pc_after - back, hit.pc_after);
      if (c.found && (c.reads || c.writes)) d = c;
    }
  }
  cs_free(insn, 1);
  cs_close(&handle);
  return d;
}
#else
decoded decode_access(const watch_hit&, const symbol_info&) { return {}; }
#endif

}  // namespace

bool is_assignment_like(std::string_view function) noexcept {
  static constexpr std::string_view names[] = {
      "operator=",  "assign",       "clear",         "reset",    "swap",   "_M_assign",
      "_M_replace", "_M_construct", "_M_set_length", "_M_erase", "resize", "emplace"};
  std::string_view name = unqualified(function);
  for (std::string_view n : names) {
    if (name == n) return true;
  }
  return false;
}

classified_access classify_access(const watch_hit& hit, bool changed_by_end) {
  symbolizer& symbols = the_symbolizer();
  std::uintptr_t insn_pc = hit.insn_pc != 0 ? hit.insn_pc : hit.pc_after - 1;
  // The access, then its callers (a return address minus one is inside the
  // call). Pointers into the symbolizer's cache: a watched variable touched
  // by every task is classified on every task, without allocating.
  const symbol_info* chain[max_callers + 1];
  std::size_t chain_size = 0;
  chain[chain_size++] = &symbols.lookup(insn_pc);
  decoded d;
  if (hit.known == known_access::unknown) {
    d = decode_access(hit, *chain[0]);
  } else {
    d.found = true;
    d.pc = insn_pc;
    d.reads = hit.known == known_access::load;
    d.writes = hit.known == known_access::store;
  }

  // Walk the frames innermost out, across inlining and calls, to the first
  // one that is the program's own: the read site. Library frames on the way
  // say whether the access is part of an assignment.
  bool assignment = false;
  std::size_t user = 0;
  bool found_user = false;
  for (std::size_t level = 0; level <= hit.caller_count && !found_user; ++level) {
    if (level > 0) chain[chain_size++] = &symbols.lookup(hit.callers[level - 1] - 1);
    const symbol_info& loc = *chain[chain_size - 1];
    const std::size_t names = loc.frames.empty() ? 1 : std::min<std::size_t>(loc.frames.size(), 64);
    for (std::size_t f = 0; f < names && !found_user; ++f) {
      if ((loc.assignment_like >> f & 1U) != 0) assignment = true;
      if ((loc.own_code >> f & 1U) != 0) {
        user = chain_size - 1;
        found_user = true;
      }
    }
  }
  const symbol_info& site = *chain[user];

  classified_access out;
  // Three reasons for a write, kept apart because each needs its own why.
  // NOLINTNEXTLINE(bugprone-branch-clone)
  if (hit.known != known_access::unknown && hit.changed) {
    // Changed before the first instrumented access: code that is not
    // instrumented (libstdc++'s out-of-line string members) wrote first.
    out.kind = access_kind::write;
  } else if (d.found && d.writes && !d.reads) {
    out.kind = access_kind::write;
  } else if (hit.known == known_access::load && assignment) {
    // Instrumented code loads the variable inside an inlined assignment: the
    // destination's old state (a copy *out of* a string goes through
    // libstdc++'s out-of-line members, which are not instrumented), also when
    // the value assigned equals the old one and the bytes end unchanged.
    out.kind = access_kind::write;
  } else if ((changed_by_end || hit.stored_after_read) && (assignment || !site.has_debug_info)) {
    out.kind = access_kind::write;
  }
  if (out.kind == access_kind::read) {
    out.site =
        code_location(site.file, site.line, site.user_function, d.found ? d.pc : hit.pc_after);
  }
  return out;
}

}  // namespace ctxpool::diagnostics::detail::plain_tls
