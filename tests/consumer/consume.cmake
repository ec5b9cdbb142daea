# Builds a user project against ctxpool and checks what the user would see.
#
#   cmake -DMODE=<mode> -DCTXPOOL_SOURCE_DIR=... -DCTXPOOL_BINARY_DIR=... \
#         -DCTXPOOL_VERSION=... -DCONSUMER_DIR=... -DWORK_DIR=... -DCXX_COMPILER=... \
#         -P consume.cmake
#
# MODE:
#   find_package     install the built ctxpool into a scratch prefix, consume it
#                    with find_package(ctxpool <major.minor>), run the program;
#                    a context-only program from the installed package rejects
#                    a misspelt CTXPOOL_DIAGNOSTICS
#   version_too_new  find_package(ctxpool <next minor>) must not accept this one
#   add_subdirectory consume the source tree with add_subdirectory, with no
#                    build type: the parent's must stay empty
#   fetchcontent_install_export
#                    FetchContent, and the consumer's own install(EXPORT) of a
#                    library linking ctxpool::ctxpool; a third project then
#                    uses that installed library with find_package
#   pkgconfig        install into a scratch prefix; `pkg-config ctxpool` gives
#                    the version, and a plain Makefile project and a Meson
#                    project (tests/consumer/pkgconfig) build and run with the
#                    flags it gives (Meson skipped, with a note, when absent)
#   readme_fetchcontent
#                    the README's FetchContent snippet, as written but for the
#                    repository (this checkout), configures a project: the
#                    pinned commit exists, is in HEAD's history, and
#                    ctxpool::ctxpool comes with it
#                    (skipped when the checkout lacks that commit: a shallow
#                    clone)
#   plain_configure  a top-level configure of ctxpool without doctest and Google
#                    Benchmark succeeds and says what it skipped
#   old_compiler     a configure with OLD_CXX fails with one message naming
#                    the compiler requirement
#   headers          every public header compiled on its own with HEADER_CXX,
#                    strict warnings and -Werror, through add_subdirectory
cmake_minimum_required(VERSION 3.25)

if(NOT DEFINED SCRATCH_NAME)
  set(SCRATCH_NAME ${MODE})
endif()
set(scratch ${WORK_DIR}/${SCRATCH_NAME})
file(REMOVE_RECURSE ${scratch})
file(MAKE_DIRECTORY ${scratch})
string(REGEX MATCH "^[0-9]+\\.[0-9]+" major_minor "${CTXPOOL_VERSION}")

# run_step(<what> <command...>): the command must succeed; its output goes to
# `step_output` in the caller.
function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "consumer (${MODE}): ${what} failed (${result}):\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

# fail_step(<what> <command...>): the command must fail; output in `step_output`.
function(fail_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(result EQUAL 0)
    message(FATAL_ERROR "consumer (${MODE}): ${what} succeeded, but must fail:\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

# expect_output(<regex>...): each must match `step_output`, with every run
# of blanks and newlines read as one space (CMake wraps its messages).
function(expect_output)
  string(REGEX REPLACE "[ \t\r\n]+" " " flat "${step_output}")
  foreach(pattern IN LISTS ARGN)
    if(NOT flat MATCHES "${pattern}")
      message(FATAL_ERROR "consumer (${MODE}): output does not match '${pattern}':\n${step_output}")
    endif()
  endforeach()
endfunction()

set(compiler -DCMAKE_CXX_COMPILER=${CXX_COMPILER})

if(MODE STREQUAL "find_package" OR MODE STREQUAL "version_too_new")
  run_step("install" ${CMAKE_COMMAND} --install ${CTXPOOL_BINARY_DIR} --prefix ${scratch}/prefix)
  set(args -S ${CONSUMER_DIR}/project -B ${scratch}/build ${compiler} -DCMAKE_BUILD_TYPE=Release
      -DCONSUME_MODE=find_package -DCMAKE_PREFIX_PATH=${scratch}/prefix)
  if(MODE STREQUAL "version_too_new")
    string(REGEX MATCH "^[0-9]+" major "${CTXPOOL_VERSION}")
    string(REGEX REPLACE "^[0-9]+\\.([0-9]+).*" "\\1" minor "${CTXPOOL_VERSION}")
    math(EXPR next_minor "${minor} + 1")
    fail_step("configure asking for ${major}.${next_minor}" ${CMAKE_COMMAND} ${args}
              -DCTXPOOL_REQUEST=${major}.${next_minor})
    expect_output("compatible with requested version \"${major}\\.${next_minor}\""
                  "version: ${CTXPOOL_VERSION}")
  else()
    run_step("configure" ${CMAKE_COMMAND} ${args} -DCTXPOOL_REQUEST=${major_minor})
    run_step("build" ${CMAKE_COMMAND} --build ${scratch}/build -j2)
    run_step("run" ${scratch}/build/consumer)
    if(EXISTS ${scratch}/build/log_consumer)
      run_step("run log_consumer" ${scratch}/build/log_consumer)
    endif()
    # The link option that keeps the environment check travels with the package.
    execute_process(COMMAND ${CMAKE_COMMAND} -E env CTXPOOL_DIAGNOSTICS=residu
                            ${scratch}/build/context_only
                    RESULT_VARIABLE result OUTPUT_VARIABLE step_output ERROR_VARIABLE step_output)
    if(NOT result EQUAL 2)
      message(FATAL_ERROR "consumer (${MODE}): context_only with CTXPOOL_DIAGNOSTICS=residu exited "
                          "${result}, expected 2:\n${step_output}")
    endif()
    expect_output("unknown mode 'residu'")
  endif()

elseif(MODE STREQUAL "add_subdirectory")
  # No CMAKE_BUILD_TYPE on purpose: the project checks it is still empty.
  run_step("configure" ${CMAKE_COMMAND} -S ${CONSUMER_DIR}/project -B ${scratch}/build ${compiler}
           -DCONSUME_MODE=add_subdirectory -DCTXPOOL_SOURCE_DIR=${CTXPOOL_SOURCE_DIR})
  run_step("build" ${CMAKE_COMMAND} --build ${scratch}/build -j2 --target consumer)
  run_step("run" ${scratch}/build/consumer)

elseif(MODE STREQUAL "fetchcontent_install_export")
  run_step("configure" ${CMAKE_COMMAND} -S ${CONSUMER_DIR}/fetchcontent -B ${scratch}/build
           ${compiler} -DCMAKE_BUILD_TYPE=Release -DCTXPOOL_SOURCE_DIR=${CTXPOOL_SOURCE_DIR}
           -DCMAKE_INSTALL_PREFIX=${scratch}/prefix)
  run_step("build" ${CMAKE_COMMAND} --build ${scratch}/build -j2)
  run_step("install" ${CMAKE_COMMAND} --install ${scratch}/build)
  run_step("configure downstream" ${CMAKE_COMMAND} -S ${CONSUMER_DIR}/downstream
           -B ${scratch}/downstream ${compiler} -DCMAKE_BUILD_TYPE=Release
           -DCMAKE_PREFIX_PATH=${scratch}/prefix)
  run_step("build downstream" ${CMAKE_COMMAND} --build ${scratch}/downstream -j2)
  run_step("run downstream" ${scratch}/downstream/downstream)
  expect_output("greeting: hello from req-9")

elseif(MODE STREQUAL "pkgconfig")
  run_step("install" ${CMAKE_COMMAND} --install ${CTXPOOL_BINARY_DIR} --prefix ${scratch}/prefix)
  file(GLOB_RECURSE pc_file ${scratch}/prefix/*/ctxpool.pc)
  if(NOT pc_file)
    message(FATAL_ERROR "consumer (${MODE}): no ctxpool.pc was installed under ${scratch}/prefix")
  endif()
  get_filename_component(pc_dir ${pc_file} DIRECTORY)
  find_program(PKG_CONFIG NAMES pkg-config pkgconf REQUIRED)
  # Only the scratch prefix's ctxpool: not one installed on the machine.
  set(env ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_dir} CXX=${CXX_COMPILER})
  run_step("pkg-config --modversion" ${env} ${PKG_CONFIG} --modversion ctxpool)
  string(STRIP "${step_output}" pc_version)
  if(NOT pc_version STREQUAL CTXPOOL_VERSION)
    message(FATAL_ERROR "consumer (${MODE}): pkg-config says ${pc_version}, expected ${CTXPOOL_VERSION}")
  endif()
  run_step("pkg-config --cflags --libs" ${env} ${PKG_CONFIG} --cflags --libs ctxpool)
  expect_output("-I${scratch}/prefix/[^ ]*include" "-lctxpool_executor" "-lfmt")

  # make: both programs; context_only shows the environment check travels
  # with the pkg-config link flags too.
  file(MAKE_DIRECTORY ${scratch}/make)
  file(COPY ${CONSUMER_DIR}/pkgconfig/Makefile ${CONSUMER_DIR}/project/main.cpp
            ${CONSUMER_DIR}/context_only.cpp DESTINATION ${scratch}/make)
  find_program(MAKE_PROGRAM NAMES make gmake REQUIRED)
  run_step("make" ${env} ${MAKE_PROGRAM} -C ${scratch}/make -j2)
  run_step("run the make-built consumer" ${scratch}/make/consumer)
  expect_output("consumer: ok")
  execute_process(COMMAND ${CMAKE_COMMAND} -E env CTXPOOL_DIAGNOSTICS=residu
                          ${scratch}/make/context_only
                  RESULT_VARIABLE result OUTPUT_VARIABLE step_output ERROR_VARIABLE step_output)
  if(NOT result EQUAL 2)
    message(FATAL_ERROR "consumer (${MODE}): make-built context_only with CTXPOOL_DIAGNOSTICS=residu "
                        "exited ${result}, expected 2:\n${step_output}")
  endif()
  expect_output("unknown mode 'residu'")

  find_program(MESON NAMES meson)
  if(MESON)
    file(MAKE_DIRECTORY ${scratch}/meson)
    file(COPY ${CONSUMER_DIR}/pkgconfig/meson.build ${CONSUMER_DIR}/project/main.cpp
         DESTINATION ${scratch}/meson)
    run_step("meson setup" ${env} ${MESON} setup ${scratch}/meson-build ${scratch}/meson
             --buildtype=release)
    expect_output("Run-time dependency ctxpool found: YES ${CTXPOOL_VERSION}")
    run_step("meson compile" ${env} ${MESON} compile -C ${scratch}/meson-build)
    run_step("run the Meson-built consumer" ${scratch}/meson-build/consumer)
    expect_output("consumer: ok")
  else()
    message(STATUS "consumer (${MODE}): Meson not found (Debian: meson): the Meson project is not built")
  endif()

elseif(MODE STREQUAL "readme_fetchcontent")
  file(READ ${CTXPOOL_SOURCE_DIR}/README.md readme)
  string(REGEX MATCH "include\\(FetchContent\\)\n[^`]*" snippet "${readme}")
  string(REGEX MATCH "GIT_TAG ([0-9a-f]+)" tag_line "${snippet}")
  set(commit "${CMAKE_MATCH_1}")
  if(NOT snippet MATCHES "FetchContent_MakeAvailable\\(ctxpool\\)" OR commit STREQUAL "")
    message(FATAL_ERROR "consumer (${MODE}): no FetchContent snippet with a GIT_TAG commit in "
                        "README.md:\n${snippet}")
  endif()
  find_package(Git REQUIRED)
  execute_process(COMMAND ${GIT_EXECUTABLE} -C ${CTXPOOL_SOURCE_DIR} cat-file -e ${commit}^{commit}
                  RESULT_VARIABLE has_commit OUTPUT_QUIET ERROR_QUIET)
  if(NOT has_commit EQUAL 0)
    # ctest reports the test as skipped on this line (SKIP_REGULAR_EXPRESSION).
    message(STATUS "consumer (${MODE}): skipped: this checkout does not have ${commit} "
                   "(a shallow clone?)")
    return()
  endif()
  # "A commit on main": one a user's clone of the published main has, not a
  # commit of some branch that merely exists in this checkout.
  execute_process(COMMAND ${GIT_EXECUTABLE} -C ${CTXPOOL_SOURCE_DIR} merge-base --is-ancestor
                          ${commit} HEAD
                  RESULT_VARIABLE on_history OUTPUT_QUIET ERROR_QUIET)
  if(NOT on_history EQUAL 0)
    message(FATAL_ERROR "consumer (${MODE}): README.md pins ${commit}, which is not in the history "
                        "of this checkout's HEAD: pin a commit of main (README.md says how)")
  endif()
  string(REPLACE "<ctxpool's repository>" "${CTXPOOL_SOURCE_DIR}" snippet "${snippet}")
  file(WRITE ${scratch}/src/main.cpp "#include <ctxpool/executor.hpp>\nint main() {}\n")
  file(WRITE ${scratch}/src/CMakeLists.txt
       "cmake_minimum_required(VERSION 3.25)\nproject(my_service LANGUAGES CXX)\n"
       "add_executable(my_service main.cpp)\n${snippet}")
  # Configuring clones the commit, configures ctxpool as a subproject and
  # resolves ctxpool::ctxpool; building the library is other tests' work.
  run_step("configure" ${CMAKE_COMMAND} -S ${scratch}/src -B ${scratch}/build ${compiler})

elseif(MODE STREQUAL "plain_configure")
  run_step("configure" ${CMAKE_COMMAND} -S ${CTXPOOL_SOURCE_DIR} -B ${scratch}/build ${compiler}
           -DCMAKE_DISABLE_FIND_PACKAGE_doctest=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON)
  expect_output("ctxpool: skipping the test suites: doctest"
                "ctxpool: skipping the benchmarks: Google Benchmark")
  if(NOT EXISTS ${scratch}/build/ctxpoolConfigVersion.cmake)
    message(FATAL_ERROR "consumer (${MODE}): the library's install files were not generated")
  endif()

elseif(MODE STREQUAL "old_compiler")
  fail_step("configure with ${OLD_CXX}" ${CMAKE_COMMAND} -S ${CTXPOOL_SOURCE_DIR}
            -B ${scratch}/build -DCMAKE_CXX_COMPILER=${OLD_CXX})
  expect_output("ctxpool needs C\\+\\+20 with <source_location> and coroutines"
                "g\\+\\+ 12 or later, or clang 15 or later")
  string(REGEX MATCHALL "CMake Error" errors "${step_output}")
  list(LENGTH errors error_count)
  if(NOT error_count EQUAL 1)
    message(FATAL_ERROR "consumer (${MODE}): ${error_count} errors, expected one:\n${step_output}")
  endif()

elseif(MODE STREQUAL "headers")
  run_step("configure" ${CMAKE_COMMAND} -S ${CONSUMER_DIR}/headers -B ${scratch}/build
           -DCMAKE_CXX_COMPILER=${HEADER_CXX} -DCTXPOOL_SOURCE_DIR=${CTXPOOL_SOURCE_DIR})
  # -k: one run lists every header that fails, not just the first.
  run_step("build" ${CMAKE_COMMAND} --build ${scratch}/build -j2 --target ctxpool_header_check
           -- -k)
  message(STATUS "consumer (${MODE}): every header compiled cleanly with ${HEADER_CXX}")

else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()
message(STATUS "consumer (${MODE}): ok")
