// Symbolisation with elfutils: libdwfl maps the live process's modules,
// libdw walks the scopes (inline frames) at an address.
#include "symbolizer.hpp"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "access_classifier.hpp"
#include "tls_discovery.hpp"

namespace ctxpool::diagnostics::detail::plain_tls {

namespace {

const Dwfl_Callbacks callbacks = {
    dwfl_linux_proc_find_elf,
    dwfl_standard_find_debuginfo,
    nullptr,
    nullptr,
};

std::string readable(std::string name) {
  constexpr std::string_view long_string =
      "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >";
  for (std::size_t at; (at = name.find(long_string)) != std::string::npos;) {
    name.replace(at, long_string.size(), "std::string");
  }
  return name;
}

std::string die_name(Dwarf_Die* die) {
  Dwarf_Attribute attr;
  for (const unsigned at : {unsigned{DW_AT_linkage_name}, unsigned{DW_AT_MIPS_linkage_name}}) {
    if (dwarf_attr_integrate(die, at, &attr) != nullptr) {
      if (const char* s = dwarf_formstring(&attr)) return readable(demangle_symbol(s));
    }
  }
  if (dwarf_attr_integrate(die, DW_AT_name, &attr) != nullptr) {
    if (const char* s = dwarf_formstring(&attr)) return s;
  }
  return {};
}

/// The compilation unit covering `pc`. libdw finds it through .debug_aranges,
/// which clang does not emit: then every unit's ranges are asked in turn.
Dwarf_Die* unit_at(Dwfl_Module* mod, std::uintptr_t pc, Dwarf_Addr& bias, Dwarf_Die& storage) {
  if (Dwarf_Die* cu = dwfl_module_addrdie(mod, pc, &bias)) return cu;
  Dwarf* dwarf = dwfl_module_getdwarf(mod, &bias);
  if (dwarf == nullptr) return nullptr;
  Dwarf_Off offset = 0, next = 0;
  std::size_t header_size = 0;
  while (dwarf_nextcu(dwarf, offset, &next, &header_size, nullptr, nullptr, nullptr) == 0) {
    if (dwarf_offdie(dwarf, offset + header_size, &storage) != nullptr &&
        dwarf_haspc(&storage, pc - bias) > 0) {
      return &storage;
    }
    offset = next;
  }
  return nullptr;
}

/// The function-like DIEs (subprograms, inlined subroutines) containing
/// `pc`, outermost first, by walking `parent`'s subtree. For units where
/// dwarf_getscopes gives up (clang's, with libdw 0.188: "no address value"):
/// the nesting of the DIEs is the inline chain. @returns whether found.
bool frames_by_walk(Dwarf_Die* parent, Dwarf_Addr pc, std::vector<Dwarf_Die>& path, int depth) {
  Dwarf_Die child;
  if (depth > 64 || dwarf_child(parent, &child) != 0) return false;
  do {
    const int tag = dwarf_tag(&child);
    const bool function_like = tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine;
    const bool block = function_like || tag == DW_TAG_lexical_block;
    const bool container = tag == DW_TAG_namespace || tag == DW_TAG_structure_type ||
                           tag == DW_TAG_class_type || tag == DW_TAG_union_type;
    if (!block && !container) continue;
    const bool contains = block && dwarf_haspc(&child, pc) > 0;
    // An inlined subroutine or block that does not contain the pc contains
    // nothing that does; a subprogram may (a local class's member defined in it).
    if (block && !contains && tag != DW_TAG_subprogram) continue;
    if (contains && function_like) path.push_back(child);
    if (frames_by_walk(&child, pc, path, depth + 1) || contains) return true;
  } while (dwarf_siblingof(&child, &child) == 0);
  return false;
}

bool is_library_frame(const std::string& name) { return name.empty() || is_runtime_name(name); }

}  // namespace

struct symbolizer::impl {
  Dwfl* dwfl = nullptr;

  void report() {
    if (dwfl == nullptr) dwfl = dwfl_begin(&callbacks);
    if (dwfl == nullptr) return;
    dwfl_report_begin(dwfl);
    dwfl_linux_proc_report(dwfl, ::getpid());
    dwfl_report_end(dwfl, nullptr, nullptr);
  }
  ~impl() {
    if (dwfl != nullptr) dwfl_end(dwfl);
  }
};

symbolizer::symbolizer() : impl_(std::make_unique<impl>()) { impl_->report(); }
symbolizer::~symbolizer() = default;

const symbol_info& symbolizer::lookup(std::uintptr_t pc) {
  static const symbol_info unknown;
  std::lock_guard lock(mutex_);
  if (auto it = cache_.find(pc); it != cache_.end()) return it->second;
  symbol_info loc;
  if (impl_->dwfl == nullptr) return unknown;
  Dwfl_Module* mod = dwfl_addrmodule(impl_->dwfl, pc);
  if (mod == nullptr) {
    impl_->report();  // a module loaded since
    mod = dwfl_addrmodule(impl_->dwfl, pc);
  }
  if (mod == nullptr) return unknown;

  GElf_Off offset = 0;
  GElf_Sym sym;
  if (const char* name = dwfl_module_addrinfo(mod, pc, &offset, &sym, nullptr, nullptr, nullptr)) {
    loc.symbol = readable(demangle_symbol(name));
    loc.function_begin = pc - offset;
    loc.function_end = loc.function_begin + (sym.st_size > 0 ? sym.st_size : offset + 1);
  }

  Dwarf_Addr bias = 0;
  Dwarf_Die unit_storage;
  if (Dwarf_Die* cu = unit_at(mod, pc, bias, unit_storage)) {
    loc.has_debug_info = true;
    Dwarf_Files* files = nullptr;
    std::size_t file_count = 0;
    dwarf_getsrcfiles(cu, &files, &file_count);
    // The chain of frames: dwarf_getscopes gives the innermost function-like
    // DIE at the pc; dwarf_getscopes_die on each gives the DIE it is inlined
    // into, up to the out-of-line subprogram. The line inside frame i is the
    // pc's own line for the innermost frame, else the call line recorded on
    // the frame inlined into it.
    Dwarf_Die* scopes = nullptr;
    int n = dwarf_getscopes(cu, pc - bias, &scopes);
    Dwarf_Die frame{};
    bool have_frame = false;
    for (int i = 0; i < n && !have_frame; ++i) {
      int tag = dwarf_tag(&scopes[i]);
      if (tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine) {
        frame = scopes[i];
        have_frame = true;
      }
    }
    std::free(scopes);
    std::vector<Dwarf_Die> walked;  // outermost first
    std::size_t walk_at = 0;        // next frame of `walked` to climb to, innermost first
    if (!have_frame && frames_by_walk(cu, pc - bias, walked, 0) && !walked.empty()) {
      frame = walked.back();
      have_frame = true;
      walk_at = walked.size() - 1;
    }
    Dwarf_Die inner{};
    bool have_inner = false;
    for (int depth = 0; have_frame && depth < 64; ++depth) {
      int tag = dwarf_tag(&frame);
      std::string name = die_name(&frame);
      loc.frames.push_back(name);
      if (loc.user_function.empty() && !is_library_frame(name)) {
        loc.user_function = name;
        if (have_inner) {
          Dwarf_Attribute attr;
          Dwarf_Word file_index = 0, line = 0;
          if (dwarf_formudata(dwarf_attr(&inner, DW_AT_call_file, &attr), &file_index) == 0 &&
              files != nullptr && file_index < file_count) {
            if (const char* f = dwarf_filesrc(files, file_index, nullptr, nullptr)) loc.file = f;
          }
          if (dwarf_formudata(dwarf_attr(&inner, DW_AT_call_line, &attr), &line) == 0) {
            loc.line = static_cast<unsigned>(line);
          }
        }
      }
      if (tag != DW_TAG_inlined_subroutine) break;
      inner = frame;
      have_inner = true;
      if (!walked.empty()) {  // the walk already knows the chain
        have_frame = walk_at > 0;
        if (have_frame) frame = walked[--walk_at];
        continue;
      }
      Dwarf_Die* outer = nullptr;
      int m = dwarf_getscopes_die(&frame, &outer);
      have_frame = false;
      for (int j = 1; j < m && !have_frame; ++j) {
        int t = dwarf_tag(&outer[j]);
        if (t == DW_TAG_subprogram || t == DW_TAG_inlined_subroutine) {
          frame = outer[j];
          have_frame = true;
        }
      }
      std::free(outer);
    }
    if (loc.user_function.empty() || loc.frames.empty() ||
        loc.frames.front() == loc.user_function) {
      if (Dwarf_Line* l = dwarf_getsrc_die(cu, pc - bias)) {
        int line = 0;
        dwarf_lineno(l, &line);
        if (const char* f = dwarf_linesrc(l, nullptr, nullptr)) {
          loc.file = f;
          loc.line = static_cast<unsigned>(line);
        }
      }
    }
  }
  // A compilation unit without a function DIE at the pc (sanitizer
  // instrumentation units, -g0 objects in a -g link) is no debug information.
  loc.has_debug_info = !loc.frames.empty();
  if (loc.user_function.empty()) loc.user_function = loc.symbol;
  const std::size_t names = loc.frames.empty() ? 1 : std::min<std::size_t>(loc.frames.size(), 64);
  for (std::size_t i = 0; i < names; ++i) {
    const std::string& name = loc.frames.empty() ? loc.symbol : loc.frames[i];
    if (is_assignment_like(name)) loc.assignment_like |= std::uint64_t{1} << i;
    if (!name.empty() && !is_runtime_name(name)) loc.own_code |= std::uint64_t{1} << i;
  }
  return cache_.emplace(pc, std::move(loc)).first->second;
}

symbolizer& the_symbolizer() {
  static symbolizer* instance = new symbolizer;  // never destroyed: used until exit
  return *instance;
}

}  // namespace ctxpool::diagnostics::detail::plain_tls
