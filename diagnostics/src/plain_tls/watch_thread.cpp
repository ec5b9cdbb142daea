// The per-thread watch state (watch_thread.hpp): its allocation and
// release, and recording a hit from the SIGTRAP handler.
#include "watch_thread.hpp"

#include <execinfo.h>
#include <unistd.h>

namespace ctxpool::diagnostics::detail::plain_tls {

constinit thread_local thread_watch* current_watch = nullptr;

namespace {

/// Frees the thread's watch state and descriptors when the thread exits.
/// `current_watch` itself stays trivially destructible, for the signal handler.
struct thread_watch_owner {
  ~thread_watch_owner() {
    thread_watch* t = current_watch;
    if (t == nullptr) return;
    current_watch = nullptr;
    for (debug_register& s : t->registers) {
      if (s.fd >= 0) ::close(s.fd);
    }
#if defined(__x86_64__)
    if (t->insn != nullptr) cs_free(t->insn, 1);
    if (t->capstone != 0) cs_close(&t->capstone);
#endif
    delete t;
  }
};
thread_local thread_watch_owner owner_;

}  // namespace

thread_watch& this_thread_watch() {
  if (current_watch == nullptr) {
    (void)&owner_;  // registers the owner's destructor for this thread
    current_watch = new thread_watch;
  }
  return *current_watch;
}

namespace {

bool same_bytes(const unsigned char* a, const unsigned char* b, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

/// The interrupted code's callers: the frames after the one at `resume`
/// (the unwinder goes through this handler and the signal trampoline first).
void record_callers(thread_watch& t, std::size_t r, std::uintptr_t resume) noexcept {
  constexpr int depth = static_cast<int>(max_callers) + 8;
  void* frames[depth];
  int n = ::backtrace(frames, depth);
  int at = 0;
  while (at < n && reinterpret_cast<std::uintptr_t>(frames[at]) != resume) ++at;
  std::size_t count = 0;
  for (int i = at + 1; i < n && count < max_callers; ++i) {
    t.callers[r][count++] = reinterpret_cast<std::uintptr_t>(frames[i]);
  }
  t.caller_count[r] = at < n ? count : 0;
}

}  // namespace

void record_hit(thread_watch& t, std::size_t r, std::uintptr_t pc_after, std::uintptr_t insn_pc,
                std::uintptr_t resume) noexcept {
  if (t.hit[r]) return;
  t.pc_after[r] = pc_after;
  t.insn_pc[r] = insn_pc;
  record_callers(t, r, resume);
  t.changed[r] = !same_bytes(t.requests[r].addr, t.requests[r].before, t.requests[r].size);
  t.hit[r] = 1;
}

}  // namespace ctxpool::diagnostics::detail::plain_tls
