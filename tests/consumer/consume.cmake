# Configures, builds and runs tests/consumer/project against ctxpool.
#   MODE=find_package     installs the already-built ctxpool into a scratch
#                         prefix and consumes it with find_package(ctxpool)
#   MODE=add_subdirectory consumes the source tree with add_subdirectory
cmake_minimum_required(VERSION 3.25)

set(scratch ${WORK_DIR}/${MODE})
file(REMOVE_RECURSE ${scratch})
file(MAKE_DIRECTORY ${scratch})

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "consumer (${MODE}): ${what} failed:\n${out}")
  endif()
endfunction()

set(configure_args -S ${CONSUMER_SOURCE_DIR} -B ${scratch}/build -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCONSUME_MODE=${MODE})
if(MODE STREQUAL "find_package")
  run_step("install" ${CMAKE_COMMAND} --install ${CTXPOOL_BINARY_DIR} --prefix ${scratch}/prefix)
  list(APPEND configure_args -DCMAKE_PREFIX_PATH=${scratch}/prefix)
elseif(MODE STREQUAL "add_subdirectory")
  list(APPEND configure_args -DCTXPOOL_SOURCE_DIR=${CTXPOOL_SOURCE_DIR})
else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()

run_step("configure" ${CMAKE_COMMAND} ${configure_args})
run_step("build" ${CMAKE_COMMAND} --build ${scratch}/build -j2)
run_step("run" ${scratch}/build/consumer)
message(STATUS "consumer (${MODE}): built and ran")
