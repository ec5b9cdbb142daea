// Per-thread snapshot of the discovered variables' bytes, and the diff that
// finds which ones a task left changed.
//
// What is not residue: first-use initialisation. Before a thread's first
// task (and again after a `dlopen`), `bind` runs every translation unit's TLS
// initialiser (`__tls_init`) of the program's own modules on that thread, as
// an implementation may do at thread start ([basic.start.dynamic]): so
// namespace-scope dynamic initialisation never happens inside a task. What
// still can is the lazy initialisation of a function-local `static
// thread_local`: its change is ignored when its own `_ZGV` guard went from 0
// to set during the task. Where a stripped module has no `__tls_init` symbol,
// a change from the TLS template's bytes while some `__tls_guard` of the
// module was set during the task is taken for initialisation too.
//
// Cost per task, whatever the number of variables: a module's variables are
// neighbours in its TLS block, so they are kept as a few spans (small gaps
// between them included); `take` is one memcpy per span, and `diff` one pass
// comparing each span, looking variables up only where bytes differ. So a
// task pays for the bytes (a few hundred nanoseconds for 400 variables) and
// for the variables it changed, not for every variable (a compare per
// variable made a 1,000-instruction task with 400 variables 10x slower).
//
// @par Thread safety
// One object per thread, used only by that thread (watchpoint handlers read
// the `before` bytes, which do not change while a task runs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tls_discovery.hpp"

namespace ctxpool::diagnostics::detail::plain_tls {

class thread_snapshot {
 public:
  /// Binds to `layout` on the calling thread: finds its blocks, runs the TLS
  /// initialisers of modules it had not bound yet, lays out the buffer.
  /// Allocates; called on the first task and after modules change.
  void bind(const tls_layout& layout);

  [[nodiscard]] const tls_layout* layout() const noexcept { return layout_; }

  /// Copies the bytes of every variable and guard (no allocation).
  void take() noexcept;

  /// Appends the variables changed since `take`, first-use initialisation
  /// excluded, to `dirty`.
  void diff(std::vector<std::uint32_t>& dirty) const;

  /// This thread's copy of variable `index`, null if the thread has none.
  [[nodiscard]] unsigned char* address(std::uint32_t index) const noexcept;

  /// The bytes variable `index` had at `take`, null if not snapshotted.
  [[nodiscard]] const unsigned char* before(std::uint32_t index) const noexcept;

  /// True if variable `index` differs now from its bytes at `take`.
  [[nodiscard]] bool changed(std::uint32_t index) const noexcept;

 private:
  struct span {  // a run of adjacent variables copied with one memcpy
    unsigned char* addr;
    std::size_t size;
    std::size_t buf;
    std::uint32_t first_entry, end_entry;
  };
  struct entry {
    std::uint32_t var;
    unsigned char* addr;
    std::size_t size;
    std::size_t buf;
    std::ptrdiff_t guard_buf;  // -1 if the variable has no guard
    unsigned char* guard_addr;
    std::size_t begin, end;  // offsets in its span
    std::size_t reach;       // the furthest `end` of this and the span's earlier entries
  };
  // Gaps up to this many bytes between variables of one module are copied
  // and compared with them rather than starting a new span.
  static constexpr std::size_t max_gap = 256;
  struct module_guards {
    std::uint32_t first, end;  // into guards_
  };
  [[nodiscard]] bool is_initialisation(const entry& e) const noexcept;

  const tls_layout* layout_ = nullptr;
  std::vector<unsigned char*> blocks_;
  std::vector<bool> initialised_;  // per module: its __tls_init ran on this thread
  std::vector<span> spans_;
  std::uint32_t span_module_ = 0;  // the module of spans_.back(), while binding
  std::vector<entry> entries_;
  std::vector<std::int32_t> entry_of_var_;  // variable index -> entry, -1 if none
  std::vector<unsigned char*> guards_;      // `_ZGV` guards then each module's __tls_guard
  std::vector<module_guards> tu_guards_;    // per module
  std::vector<unsigned char> buf_;          // variable bytes, then guard bytes
  std::size_t guard_base_ = 0;
};

}  // namespace ctxpool::diagnostics::detail::plain_tls
