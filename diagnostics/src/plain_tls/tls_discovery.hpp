// Discovery of the program's own plain `thread_local` variables (ELF TLS).
//
// Each loaded module's PT_TLS segment is its per-thread TLS block template;
// its STT_TLS symbols (.symtab, else .dynsym) name the variables in it, their
// `st_value` being the offset in the block. Modules of the C and C++
// runtimes, of the sanitizers and of the libraries ctxpool itself uses are
// skipped by file name; ctxpool, the standard library and test frameworks
// linked statically into the executable are skipped by demangled name prefix
// (`ctxpool::`, `std::`, `doctest::`, names starting with `__` ...).
//
// Compiler artefacts are not variables: `_ZGV…` guard bytes of function-local
// `static thread_local`s are attached to their variable, each translation
// unit's `__tls_guard` to the module, and the translation units' TLS
// initialisers (`__tls_init`) are kept so that a thread can be initialised
// before its first task (see tls_snapshot.hpp).
//
// @par Thread safety
// `tls_discovery` is used under the monitor's lock; the layouts it publishes
// are immutable and never freed, so workers read them without a lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "monitor.hpp"

namespace ctxpool::diagnostics::detail::plain_tls {

/// One loaded module that has a TLS segment and variables of the program's own.
struct tls_module {
  std::string path;
  std::size_t modid = 0;                 ///< the dynamic linker's TLS module id
  const unsigned char* image = nullptr;  ///< initialised part of the TLS template (.tdata)
  std::size_t image_size = 0;            ///< bytes of .tdata; the rest of the block starts zeroed
  std::size_t block_size = 0;
  std::vector<std::size_t> tu_guards;  ///< offsets of each translation unit's `__tls_guard`
  std::vector<void (*)()> tls_inits;   ///< each translation unit's `__tls_init`
  bool loaded = true;
};

/// One variable: where it lives in its module's block, and its guard.
struct tls_variable {
  std::uint32_t module = 0;  ///< index into tls_layout::modules
  std::size_t offset = 0;    ///< in the module's TLS block
  std::size_t size = 0;
  std::ptrdiff_t guard = -1;  ///< offset of its `_ZGV` guard byte, -1 if none
};

/// Everything discovered up to one moment; append-only across versions, so an
/// index into `variables` keeps its meaning.
struct tls_layout {
  std::vector<tls_module> modules;
  std::vector<tls_variable> variables;
  std::vector<variable> described;  ///< parallel to `variables`
  unsigned long long adds = 0;      ///< dl_iterate_phdr's counters when taken
  unsigned long long subs = 0;
};

/// Finds the variables; call `refresh` again when `changed()` says modules
/// were loaded or unloaded since.
class tls_discovery {
 public:
  using name_filter = std::function<bool(std::string_view)>;

  /// `skip(name)` says which demangled names are caches, never to be watched.
  explicit tls_discovery(name_filter skip);

  /// Rescans the loaded modules; returns the new layout (the previous one
  /// stays valid). Throws nothing: a module that cannot be read is skipped.
  const tls_layout* refresh();

  /// The layout last published (null before the first refresh).
  [[nodiscard]] const tls_layout* current() const noexcept { return current_; }

  /// True when modules were loaded or unloaded after `layout` was taken.
  /// Cheap: stops dl_iterate_phdr at the first module.
  [[nodiscard]] static bool changed(const tls_layout& layout) noexcept;

 private:
  name_filter skip_;
  std::vector<std::unique_ptr<tls_layout>> versions_;  // never freed: workers may hold any
  const tls_layout* current_ = nullptr;
};

/// True for demangled names of compiler, runtime and library internals that
/// are never the program's own variables (`ctxpool::`, `std::`, `__x` ...).
[[nodiscard]] bool is_runtime_name(std::string_view name) noexcept;

/// True for files of the C/C++ runtimes, sanitizers and the libraries ctxpool
/// uses (`libc.so.6`, `libstdc++.so.6`, `ld-linux-x86-64.so.2`, `libasan` ...).
[[nodiscard]] bool is_runtime_module(std::string_view path) noexcept;

/// "auth_token" for `_Z10auth_tokenB5cxx11`, "request_ctx()::depth" for
/// `_ZZ11request_ctxvE5depth`: demangled, without ABI tags.
[[nodiscard]] std::string demangle_symbol(const char* mangled);

/// The calling thread's TLS block of each module of `layout` (null where the
/// thread has none and none can be made), indexed like `layout.modules`.
void thread_blocks(const tls_layout& layout, std::vector<unsigned char*>& out);

}  // namespace ctxpool::diagnostics::detail::plain_tls
