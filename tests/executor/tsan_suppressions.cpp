// ThreadSanitizer suppressions compiled into the executor test programs.
//
// libstdc++ is not built with TSan, so the atomic reference count of an
// exception object held by a std::exception_ptr is invisible to it. When a
// worker drops the last reference to a std::future's shared state (the
// promise inside a finished task) after the caller has read the exception,
// TSan reports the exception's destruction as racing with that read, though
// the count orders them. Only those frames are suppressed: the release, and
// the future result's destruction that calls it (inlined away in some builds).
#if defined(__SANITIZE_THREAD__)
extern "C" const char* __tsan_default_suppressions() {
  return "race:std::__exception_ptr::exception_ptr::_M_release\n"
         "race:std::__future_base::_Result*::_M_destroy\n";
}
#endif
