// ThreadSanitizer suppressions compiled into the executor test programs.
//
// libstdc++ is not built with TSan, so the atomic reference count of an
// exception object held by a std::exception_ptr is invisible to it. When a
// worker drops the last reference to a std::future's shared state (the
// promise inside a finished task) after the caller has read the exception,
// TSan reports the exception's destruction as racing with that read, though
// the count orders them. Only those frames are suppressed: the release, and
// the destruction of a future's shared state that calls it (the frames in
// between are inlined differently from build to build). The shared state's
// own reference count is visible to TSan, so nothing else is hidden.
//
// An any_io_executor holding an executor larger than its 24-byte buffer (a
// strand of the pool, 40 bytes since it converts to strand<any_io_executor>)
// shares it through Asio's shared_target_executor, whose count is released
// with fetch_sub(release) and an acquire fence (asio/detail/atomic_count.hpp):
// correct, but GCC's TSan does not model atomic_thread_fence and reports the
// last owner's delete as racing with the other owners' decrements. Only the
// destruction of that shared holder is suppressed.
#if defined(__SANITIZE_THREAD__)
extern "C" const char* __tsan_default_suppressions() {
  return "race:std::__exception_ptr::exception_ptr::_M_release\n"
         "race:std::__future_base::_State_baseV2::~_State_baseV2\n"
         "race:boost::asio::execution::detail::shared_target_executor::~shared_target_executor\n";
}
#endif
