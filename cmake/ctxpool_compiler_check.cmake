# Stops the configure early, with one message, on a compiler that cannot build
# ctxpool, instead of letting it fail later with errors that point elsewhere
# (clang 14 with libstdc++ 12 suggests `boost::source_location`).

set(ctxpool_compiler_requirement
    "ctxpool needs C++20 with <source_location> and coroutines: g++ 12 or later, or clang 15 or "
    "later (with libstdc++ 12 or libc++ 15)")

if((CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 12)
   OR (CMAKE_CXX_COMPILER_ID STREQUAL "Clang" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 15))
  message(FATAL_ERROR ${ctxpool_compiler_requirement} "; this is ${CMAKE_CXX_COMPILER_ID} "
                      "${CMAKE_CXX_COMPILER_VERSION} (${CMAKE_CXX_COMPILER}). Choose another with "
                      "-DCMAKE_CXX_COMPILER=..., e.g. g++-12 or clang++-16.")
endif()

# A new enough compiler can still meet an old standard library; ask the
# library itself (the result is cached, so this costs one compile per build tree).
include(CheckCXXSourceCompiles)
function(ctxpool_check_standard_library)
  set(CMAKE_CXX_STANDARD 20)
  set(CMAKE_CXX_STANDARD_REQUIRED ON)
  set(CMAKE_REQUIRED_QUIET ON)
  check_cxx_source_compiles([[
#include <coroutine>
#include <source_location>
int main() {
  std::coroutine_handle<> none;
  return static_cast<int>(std::source_location::current().line()) + (none ? 1 : 0);
}
]] CTXPOOL_HAVE_SOURCE_LOCATION_AND_COROUTINES)
  if(NOT CTXPOOL_HAVE_SOURCE_LOCATION_AND_COROUTINES)
    unset(CTXPOOL_HAVE_SOURCE_LOCATION_AND_COROUTINES CACHE)  # retry after the fix
    message(FATAL_ERROR ${ctxpool_compiler_requirement} "; ${CMAKE_CXX_COMPILER_ID} "
                        "${CMAKE_CXX_COMPILER_VERSION} (${CMAKE_CXX_COMPILER}) with its standard "
                        "library cannot compile std::source_location::current() and "
                        "<coroutine> in C++20 mode.")
  endif()
endfunction()
ctxpool_check_standard_library()
