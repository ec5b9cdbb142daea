// The x86-64 single-step tracer: the task runs with the trap flag set, and
// each instruction's memory operands are decoded (capstone) and compared with
// the watched ranges (see watchpoints.hpp).
#include <sys/syscall.h>

#include <cstring>

#include "watch_thread.hpp"

#if defined(__x86_64__)

namespace ctxpool::diagnostics::detail::plain_tls {
namespace {

constexpr unsigned long trap_flag = 0x100;

std::uintptr_t register_value(const greg_t* g, unsigned reg, std::uintptr_t next_pc) noexcept {
  switch (reg) {
    case X86_REG_RAX: return static_cast<std::uintptr_t>(g[REG_RAX]);
    case X86_REG_RBX: return static_cast<std::uintptr_t>(g[REG_RBX]);
    case X86_REG_RCX: return static_cast<std::uintptr_t>(g[REG_RCX]);
    case X86_REG_RDX: return static_cast<std::uintptr_t>(g[REG_RDX]);
    case X86_REG_RSI: return static_cast<std::uintptr_t>(g[REG_RSI]);
    case X86_REG_RDI: return static_cast<std::uintptr_t>(g[REG_RDI]);
    case X86_REG_RBP: return static_cast<std::uintptr_t>(g[REG_RBP]);
    case X86_REG_RSP: return static_cast<std::uintptr_t>(g[REG_RSP]);
    case X86_REG_R8: return static_cast<std::uintptr_t>(g[REG_R8]);
    case X86_REG_R9: return static_cast<std::uintptr_t>(g[REG_R9]);
    case X86_REG_R10: return static_cast<std::uintptr_t>(g[REG_R10]);
    case X86_REG_R11: return static_cast<std::uintptr_t>(g[REG_R11]);
    case X86_REG_R12: return static_cast<std::uintptr_t>(g[REG_R12]);
    case X86_REG_R13: return static_cast<std::uintptr_t>(g[REG_R13]);
    case X86_REG_R14: return static_cast<std::uintptr_t>(g[REG_R14]);
    case X86_REG_R15: return static_cast<std::uintptr_t>(g[REG_R15]);
    case X86_REG_RIP: return next_pc;
    default: return 0;
  }
}

/// Which watched variables the instruction at `t.previous_pc`, run with the
/// registers in `t.previous`, touched.
void check_previous_instruction(thread_watch& t, std::uintptr_t resume) noexcept {
  const auto* code = reinterpret_cast<const std::uint8_t*>(t.previous_pc);
  std::size_t size = 16;
  std::uint64_t address = t.previous_pc;
  if (!cs_disasm_iter(t.capstone, &code, &size, &address, t.insn)) return;
  const cs_x86& x86 = t.insn->detail->x86;
  std::uintptr_t next_pc = t.previous_pc + t.insn->size;
  bool rep = x86.prefix[0] == X86_PREFIX_REP || x86.prefix[0] == X86_PREFIX_REPNE;
  for (std::uint8_t i = 0; i < x86.op_count; ++i) {
    const cs_x86_op& op = x86.operands[i];
    if (op.type != X86_OP_MEM) continue;
    if (t.insn->id == X86_INS_LEA || t.insn->id == X86_INS_NOP) continue;
    std::uintptr_t ea = register_value(t.previous, op.mem.base, next_pc) +
                        register_value(t.previous, op.mem.index, next_pc) *
                            static_cast<std::uintptr_t>(op.mem.scale) +
                        static_cast<std::uintptr_t>(op.mem.disp);
    if (op.mem.segment == X86_REG_FS) ea += t.fs_base;
    std::size_t len = op.size != 0 ? op.size : 1;
    if (rep)
      len *= static_cast<std::size_t>(t.previous[REG_RCX]) > 0
                 ? static_cast<std::size_t>(t.previous[REG_RCX])
                 : 1;
    const bool writes = (op.access & CS_AC_WRITE) != 0;
    const bool only_writes = writes && (op.access & CS_AC_READ) == 0;
    for (std::size_t r = 0; r < t.count; ++r) {
      auto lo = reinterpret_cast<std::uintptr_t>(t.requests[r].addr);
      if (ea >= lo + t.requests[r].size || lo >= ea + len) continue;
      if (!t.hit[r]) {
        record_hit(t, r, next_pc, t.previous_pc, resume);
        if (only_writes) {
          --t.remaining;
        } else {
          t.follow[r] = store_follow_window;
        }
      } else if (t.follow[r] > 0 && writes) {
        t.stored_after_read[r] = true;
        t.follow[r] = 0;
        --t.remaining;
      }
    }
  }
}

/// True if tracing must stop before the next instruction: a system call that
/// blocks SIGTRAP (a trace trap while it is blocked kills the process; glibc
/// blocks every signal around thread creation) or creates a thread or
/// process (the child would inherit the trap flag).
bool must_stop_tracing(const greg_t* g) noexcept {
  const auto* pc = reinterpret_cast<const unsigned char*>(g[REG_RIP]);
  if (pc[0] != 0x0f || pc[1] != 0x05) return false;  // not `syscall`
  long nr = static_cast<long>(g[REG_RAX]);
  if (nr == SYS_rt_sigprocmask) {
    long how = static_cast<long>(g[REG_RDI]);
    const auto* set = reinterpret_cast<const unsigned long*>(g[REG_RSI]);
    return (how == SIG_BLOCK || how == SIG_SETMASK) && set != nullptr &&
           (*set & (1UL << (SIGTRAP - 1))) != 0;
  }
  return nr == SYS_clone || nr == SYS_fork || nr == SYS_vfork
#ifdef SYS_clone3
         || nr == SYS_clone3
#endif
      ;
}

}  // namespace

void on_step(thread_watch& t, ucontext_t* uc) noexcept {
  greg_t* g = uc->uc_mcontext.gregs;
  if (t.have_previous) {
    // Windows opened by this instruction's reads start counting at the next.
    for (std::size_t r = 0; r < t.count; ++r) {
      if (t.follow[r] > 0 && --t.follow[r] == 0) --t.remaining;  // no store followed
    }
    check_previous_instruction(t, static_cast<std::uintptr_t>(g[REG_RIP]));
  }
  std::memcpy(t.previous, g, sizeof t.previous);
  t.previous_pc = static_cast<std::uintptr_t>(g[REG_RIP]);
  t.have_previous = true;
  if (t.remaining == 0 || --t.steps_left == 0 || must_stop_tracing(g)) {
    // Done, or stop here: the rest of a task that blocks SIGTRAP or starts
    // a thread is not traced (its later first accesses are not seen).
    g[REG_EFL] &= ~static_cast<greg_t>(trap_flag);
    t.stepping = 0;
  }
}

void set_trap_flag(bool on) noexcept {
  if (on) {
    asm volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq" ::: "memory", "cc");
  } else {
    asm volatile("pushfq\n\tandq $~0x100, (%%rsp)\n\tpopfq" ::: "memory", "cc");
  }
}

std::size_t arm_single_step(thread_watch& t, const watch_request* requests,
                            std::size_t n) noexcept {
  if (t.capstone == 0) {
    if (cs_open(CS_ARCH_X86, CS_MODE_64, &t.capstone) != CS_ERR_OK) return 0;
    cs_option(t.capstone, CS_OPT_DETAIL, CS_OPT_ON);
    t.insn = cs_malloc(t.capstone);
  }
  for (std::size_t i = 0; i < n && t.count < max_watched_per_task; ++i) {
    t.requests[t.count] = requests[i];
    t.hit[t.count] = 0;
    t.follow[t.count] = 0;
    t.stored_after_read[t.count] = false;
    ++t.count;
  }
  t.remaining = t.count;
  t.steps_left = single_step_budget;
  t.have_previous = false;
  t.fs_base = reinterpret_cast<std::uintptr_t>(__builtin_thread_pointer());
  t.active = 1;
  t.stepping = 1;
  set_trap_flag(true);
  return t.count;
}

}  // namespace ctxpool::diagnostics::detail::plain_tls

#endif
