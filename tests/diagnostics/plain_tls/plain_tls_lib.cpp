// A shared library of the test program with a thread_local of its own.
#include <string>

thread_local long lib_requests = 0;

__attribute__((visibility("default"))) void lib_count_request() { ++lib_requests; }
__attribute__((visibility("default"))) long lib_request_count() { return lib_requests; }
