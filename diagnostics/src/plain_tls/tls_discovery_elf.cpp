// Linux/ELF: finds TLS variables from PT_TLS segments (dl_iterate_phdr) and
// STT_TLS symbols (libelf), and each thread's TLS block of a module.
#include "tls_discovery.hpp"

#include <cxxabi.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <link.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>

namespace ctxpool::diagnostics::detail::plain_tls {

namespace {

struct loaded_module {
  std::string path;
  std::uintptr_t bias = 0;
  std::size_t modid = 0;
  const ElfW(Phdr) * tls = nullptr;
};

int collect_module(dl_phdr_info* info, std::size_t, void* out) {
  auto& modules = *static_cast<std::vector<loaded_module>*>(out);
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type == PT_TLS && info->dlpi_phdr[i].p_memsz > 0) {
      loaded_module m;
      m.path = info->dlpi_name != nullptr ? info->dlpi_name : "";
      m.bias = info->dlpi_addr;
      m.modid = info->dlpi_tls_modid;
      m.tls = &info->dlpi_phdr[i];
      modules.push_back(std::move(m));
    }
  }
  return 0;
}

struct counters {
  unsigned long long adds = 0, subs = 0;
};

int read_counters(dl_phdr_info* info, std::size_t size, void* out) {
  auto* c = static_cast<counters*>(out);
  if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
    c->adds = info->dlpi_adds;
    c->subs = info->dlpi_subs;
  }
  return 1;  // the counters are the same in every callback: stop at the first
}

std::string executable_path() {
  std::array<char, 4096> buf{};
  ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  return n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : std::string();
}

/// The symbols of one ELF file, as they matter here.
struct elf_symbols {
  struct tls_symbol {
    std::string mangled;
    std::size_t offset, size;
  };
  std::vector<tls_symbol> tls;
  std::vector<std::size_t> tu_guards;
  std::vector<std::uintptr_t> tls_inits;  // link-time addresses
};

bool read_symbols(const std::string& path, elf_symbols& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  elf_version(EV_CURRENT);
  Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
  bool ok = elf != nullptr;
  if (ok) {
    // .symtab has the local symbols (function-local statics, `static`
    // variables, guards); .dynsym only the exported ones of a stripped file.
    Elf_Scn* chosen = nullptr;
    for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn)) != nullptr;) {
      GElf_Shdr shdr;
      if (gelf_getshdr(scn, &shdr) == nullptr) continue;
      if (shdr.sh_type == SHT_SYMTAB) chosen = scn;
      if (shdr.sh_type == SHT_DYNSYM && chosen == nullptr) chosen = scn;
    }
    GElf_Shdr shdr;
    Elf_Data* data = chosen != nullptr ? elf_getdata(chosen, nullptr) : nullptr;
    if (data != nullptr && gelf_getshdr(chosen, &shdr) != nullptr && shdr.sh_entsize > 0) {
      std::size_t count = shdr.sh_size / shdr.sh_entsize;
      std::map<std::uintptr_t, bool> inits;
      for (std::size_t i = 0; i < count; ++i) {
        GElf_Sym sym;
        if (gelf_getsym(data, static_cast<int>(i), &sym) == nullptr) continue;
        const char* name = elf_strptr(elf, shdr.sh_link, sym.st_name);
        if (name == nullptr || *name == '\0' || sym.st_shndx == SHN_UNDEF) continue;
        int type = GELF_ST_TYPE(sym.st_info);
        if (type == STT_TLS) {
          if (std::strcmp(name, "__tls_guard") == 0) {
            out.tu_guards.push_back(sym.st_value);
          } else {
            out.tls.push_back({name, sym.st_value, sym.st_size});
          }
        } else if (type == STT_FUNC &&
                   (std::strcmp(name, "__tls_init") == 0 || std::strncmp(name, "_ZTH", 4) == 0)) {
          // `_ZTH<var>` is an alias of its unit's `__tls_init`; both test the
          // unit's guard first, so calling either twice is harmless.
          inits[sym.st_value] = true;
        }
      }
      for (const auto& [addr, unused] : inits) out.tls_inits.push_back(addr);
    }
    elf_end(elf);
  }
  ::close(fd);
  return ok;
}

}  // namespace

std::string demangle_symbol(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> text(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  std::string out = status == 0 && text ? text.get() : mangled;
  // ABI tags ("auth_token[abi:cxx11]") are not what the user wrote.
  for (std::size_t at; (at = out.find("[abi:")) != std::string::npos;) {
    std::size_t end = out.find(']', at);
    if (end == std::string::npos) break;
    out.erase(at, end + 1 - at);
  }
  return out;
}

bool is_runtime_name(std::string_view name) noexcept {
  static constexpr std::string_view prefixes[] = {"ctxpool::",
                                                  "std::",
                                                  "__gnu_cxx::",
                                                  "boost::",
                                                  "fmt::",
                                                  "doctest::",
                                                  "testing::",
                                                  "benchmark::",
                                                  "tbb::",
                                                  "__",
                                                  "_GLOBAL_",
                                                  "guard variable",
                                                  "TLS init function",
                                                  "TLS wrapper function",
                                                  "(anonymous namespace)::ctxpool"};
  for (std::string_view p : prefixes) {
    if (name.starts_with(p)) return true;
  }
  // Function-local statics of library functions: "std::foo()::x" is caught
  // above; "ctxpool::...()::x" too.
  return false;
}

bool is_runtime_module(std::string_view path) noexcept {
  std::string_view base =
      path.substr(path.rfind('/') == std::string_view::npos ? 0 : path.rfind('/') + 1);
  static constexpr std::string_view prefixes[] = {
      "libc.so",    "libc-",        "libm.so",   "libstdc++",   "libc++",    "libgcc_s",
      "libpthread", "libdl.so",     "librt.so",  "ld-linux",    "ld64.so",   "linux-vdso",
      "libasan",    "libtsan",      "libubsan",  "liblsan",     "libhwasan", "libclang_rt",
      "libdw.so",   "libdw-",       "libelf",    "libcapstone", "libfmt",    "libboost_",
      "libtbb",     "libbenchmark", "libgtest",  "libgmock",    "libz.so",   "liblzma",
      "libbz2",     "libzstd",      "libunwind", "libatomic",   "libgomp",   "libresolv"};
  for (std::string_view p : prefixes) {
    if (base.starts_with(p)) return true;
  }
  return false;
}

tls_discovery::tls_discovery(name_filter skip) : skip_(std::move(skip)) {}

bool tls_discovery::changed(const tls_layout& layout) noexcept {
  counters c;
  dl_iterate_phdr(read_counters, &c);
  return c.adds != layout.adds || c.subs != layout.subs;
}

const tls_layout* tls_discovery::refresh() {
  auto next = current_ != nullptr ? std::make_unique<tls_layout>(*current_)
                                  : std::make_unique<tls_layout>();
  counters c;
  dl_iterate_phdr(read_counters, &c);
  next->adds = c.adds;
  next->subs = c.subs;

  std::vector<loaded_module> loaded;
  dl_iterate_phdr(collect_module, &loaded);
  for (auto& m : next->modules) m.loaded = false;
  for (const loaded_module& lm : loaded) {
    std::string path = lm.path.empty() ? executable_path() : lm.path;
    bool known = false;
    for (auto& m : next->modules) {
      if (m.modid == lm.modid && m.path == path) {
        m.loaded = true;
        known = true;
      }
    }
    if (known || path.empty() || is_runtime_module(path)) continue;
    elf_symbols syms;
    if (!read_symbols(path, syms)) continue;

    tls_module mod;
    mod.path = path;
    mod.modid = lm.modid;
    mod.image = reinterpret_cast<const unsigned char*>(lm.bias + lm.tls->p_vaddr);
    mod.image_size = lm.tls->p_filesz;
    mod.block_size = lm.tls->p_memsz;
    mod.tu_guards = syms.tu_guards;
    for (std::uintptr_t addr : syms.tls_inits) {
      mod.tls_inits.push_back(reinterpret_cast<void (*)()>(lm.bias + addr));
    }
    auto module_index = static_cast<std::uint32_t>(next->modules.size());

    std::unordered_map<std::string, std::size_t>
        guards;  // guarded variable's mangled name -> offset
    for (const auto& s : syms.tls) {
      if (s.mangled.starts_with("_ZGV")) guards.emplace("_Z" + s.mangled.substr(4), s.offset);
    }
    bool any = false;
    for (const auto& s : syms.tls) {
      if (s.mangled.starts_with("_ZGV") || s.size == 0 || s.offset + s.size > mod.block_size)
        continue;
      std::string name = demangle_symbol(s.mangled.c_str());
      if (is_runtime_name(name) || (skip_ && skip_(name))) continue;
      tls_variable v;
      v.module = module_index;
      v.offset = s.offset;
      v.size = s.size;
      if (auto g = guards.find(s.mangled); g != guards.end())
        v.guard = static_cast<std::ptrdiff_t>(g->second);
      next->variables.push_back(v);
      next->described.push_back({std::move(name), path, s.size});
      any = true;
    }
    // A module with no variable of the program's own is not diffed, and its
    // initialisers (runtime or library units) are left to run on first use.
    if (any) next->modules.push_back(std::move(mod));
  }
  versions_.push_back(std::move(next));
  current_ = versions_.back().get();
  return current_;
}

namespace {

struct block_query {
  const tls_layout* layout;
  std::vector<unsigned char*>* out;
};

int collect_blocks(dl_phdr_info* info, std::size_t, void* data) {
  auto* q = static_cast<block_query*>(data);
  for (std::size_t i = 0; i < q->layout->modules.size(); ++i) {
    if (q->layout->modules[i].modid == info->dlpi_tls_modid) {
      (*q->out)[i] = static_cast<unsigned char*>(info->dlpi_tls_data);
    }
  }
  return 0;
}

}  // namespace

#if defined(__x86_64__)
// The dynamic linker's TLS entry point (x86-64 psABI): the calling thread's
// address of (module, offset), allocating a dlopen'ed module's block on first use.
struct tls_index_t {
  unsigned long module;
  unsigned long offset;
};
extern "C" void* __tls_get_addr(tls_index_t*);
#endif

void thread_blocks(const tls_layout& layout, std::vector<unsigned char*>& out) {
  out.assign(layout.modules.size(), nullptr);
  block_query q{&layout, &out};
  dl_iterate_phdr(collect_blocks, &q);
#if defined(__x86_64__)
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] == nullptr && layout.modules[i].loaded) {
      tls_index_t ti{layout.modules[i].modid, 0};
      out[i] = static_cast<unsigned char*>(__tls_get_addr(&ti));
    }
  }
#endif
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!layout.modules[i].loaded) out[i] = nullptr;
  }
}

}  // namespace ctxpool::diagnostics::detail::plain_tls
