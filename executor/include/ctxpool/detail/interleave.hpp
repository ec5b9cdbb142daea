// Protocol interleaving injection for test builds: random yields and short
// sleeps at each step of the wake/park protocol, the way loom shakes out
// Tokio's scheduler, but on real threads.
//
// Built only with the CMake option CTXPOOL_INTERLEAVE_PROTOCOL (off by
// default; scripts/run.sh turns it on for the clang-16 test build). Each
// CTXPOOL_PROTOCOL_STEP() marks a point between two steps of the protocol
// (publish/look, announce/look, release/hand over) where a preemption is
// legal; a lost wake-up that needs one to be there shows up as a bounded test
// wait that fails. CTXPOOL_INTERLEAVE_SEED fixes the random sequence of the
// first thread to reach a step, for reproducing a failure.
#pragma once

#if defined(CTXPOOL_INTERLEAVE_PROTOCOL)

namespace ctxpool::detail {
/// Sometimes yields the core, spins or sleeps a few microseconds.
void protocol_step() noexcept;
}  // namespace ctxpool::detail

#define CTXPOOL_PROTOCOL_STEP() ::ctxpool::detail::protocol_step()

#else

#define CTXPOOL_PROTOCOL_STEP() static_cast<void>(0)

#endif
