# ctxpool_enable_residue_instrumentation(<target>...)
#
# The residue CI build: compiles <target>s so that CTXPOOL_DIAGNOSTICS=residue
# sees the first access of every plain `thread_local` in every task, on any
# machine (no debug registers, no perf_event_open, no instruction budget).
#
# What it does (clang >= 14): adds clang's SanitizerCoverage
# `-fsanitize-coverage=func,inline-8bit-counters,trace-loads,trace-stores`, so
# that every load and store of the target's code calls ctxpool's callbacks
# (defined in ctxpool::diagnostics, which is not instrumented; clang's own
# coverage runtime is not linked), plus `-fno-omit-frame-pointer` (a read
# inside a library template is reported at the caller's line) and
# `-gdwarf-4` (read lines). An executable also links ctxpool::diagnostics and
# exports the callbacks, so that instrumented shared libraries and dlopen'ed
# plugins reach them: pass the executable too when you pass a library.
#
# What it costs: like a sanitizer build. Every load and store of
# instrumented code calls a check (one compare outside TLS): memory-heavy code
# runs about 1.0-1.7x slower with detection off; with residue on, each task
# adds about 1 us plus 4 ns per discovered thread_local (snapshot and diff),
# and each first access of a watched variable a little more
# (bench/plain_tls_instrumented_bench; README "Plain thread_locals").
# Build a separate CI configuration with it, not your release.
#
# What it sees: reads and writes made by instrumented code. A read made by
# code that is not instrumented (an out-of-line libstdc++ member such as
# std::string::compare, a library built without it) is not seen; a write
# made there is (the task-start snapshot shows the bytes changed).
#
# GCC (12 and earlier) has no load/store callbacks: the function then says so
# at configure time and changes nothing; residue mode uses hardware
# watchpoints where they fire, else reports the variables a task leaves
# changed, with one start-up notice.
function(ctxpool_enable_residue_instrumentation)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang" OR CMAKE_CXX_COMPILER_VERSION VERSION_LESS 14)
    message(WARNING
      "ctxpool_enable_residue_instrumentation(${ARGN}): ${CMAKE_CXX_COMPILER_ID} "
      "${CMAKE_CXX_COMPILER_VERSION} has no load/store callbacks (clang >= 14's "
      "-fsanitize-coverage=trace-loads,trace-stores); the targets are built as they are. "
      "Residue mode then watches plain thread_local reads with hardware watchpoints where "
      "they fire, and elsewhere reports only the variables a task leaves changed. "
      "Configure the residue CI build with -DCMAKE_CXX_COMPILER=clang++ for full detection.")
    return()
  endif()
  foreach(target IN LISTS ARGN)
    if(NOT TARGET ${target})
      message(FATAL_ERROR "ctxpool_enable_residue_instrumentation: '${target}' is not a target")
    endif()
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "INTERFACE_LIBRARY")
      message(FATAL_ERROR "ctxpool_enable_residue_instrumentation: '${target}' is an interface "
                          "library; pass the targets that compile its code")
    endif()
    target_compile_options(${target} PRIVATE
      -fsanitize-coverage=func,inline-8bit-counters,trace-loads,trace-stores
      -fno-omit-frame-pointer -gdwarf-4)
    if(type STREQUAL "EXECUTABLE")
      target_link_libraries(${target} PRIVATE ctxpool::diagnostics)
      # Keep the callbacks in the program even when only its libraries are
      # instrumented, and export them to those libraries and to plugins.
      target_link_options(${target} PRIVATE
        "LINKER:--undefined=__sanitizer_cov_load1"
        "LINKER:--export-dynamic-symbol=__sanitizer_cov_*")
    endif()
  endforeach()
endfunction()
