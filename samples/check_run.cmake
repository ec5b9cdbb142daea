# Runs one sample and checks its exit status and output.
#
#   cmake -DPROGRAM=<exe> [-DARGS=a|b] [-DEXPECT_EXIT=66] [-DEXPECT=re1|re2]
#         [-DREJECT=re1|re2] [-DREPORT=<file> -DREPORT_EXPECT=re1|re2]
#         -P check_run.cmake
#
# REPORT names a file the program is expected to write (a diagnostics report);
# it is removed before the run, so that a stale one cannot pass, and must then
# exist and match every REPORT_EXPECT regex.
#
# ARGS, EXPECT and REJECT are '|'-separated (CTest's own list separator, ';',
# does not survive add_test). EXPECT and REJECT are regular expressions that
# must / must not match the program's combined stdout and stderr. The test's
# ENVIRONMENT property reaches the program, since it inherits this process's.
if(NOT DEFINED PROGRAM)
  message(FATAL_ERROR "check_run.cmake: PROGRAM is required")
endif()
if(NOT DEFINED EXPECT_EXIT)
  set(EXPECT_EXIT 0)
endif()
set(args "")
if(DEFINED ARGS AND NOT ARGS STREQUAL "")
  string(REPLACE "|" ";" args "${ARGS}")
endif()

if(DEFINED REPORT AND NOT REPORT STREQUAL "")
  file(REMOVE "${REPORT}")
endif()

execute_process(COMMAND "${PROGRAM}" ${args}
                RESULT_VARIABLE status
                OUTPUT_VARIABLE output
                ERROR_VARIABLE output)
message("${output}")

set(failed FALSE)
if(NOT "${status}" STREQUAL "${EXPECT_EXIT}")
  message(SEND_ERROR "exit status ${status}, expected ${EXPECT_EXIT}")
  set(failed TRUE)
endif()
if(DEFINED EXPECT AND NOT EXPECT STREQUAL "")
  string(REPLACE "|" ";" patterns "${EXPECT}")
  foreach(pattern IN LISTS patterns)
    if(NOT output MATCHES "${pattern}")
      message(SEND_ERROR "output does not match '${pattern}'")
      set(failed TRUE)
    endif()
  endforeach()
endif()
if(DEFINED REJECT AND NOT REJECT STREQUAL "")
  string(REPLACE "|" ";" patterns "${REJECT}")
  foreach(pattern IN LISTS patterns)
    if(output MATCHES "${pattern}")
      message(SEND_ERROR "output matches '${pattern}', which it must not")
      set(failed TRUE)
    endif()
  endforeach()
endif()
if(DEFINED REPORT AND NOT REPORT STREQUAL "")
  if(NOT EXISTS "${REPORT}")
    message(SEND_ERROR "report ${REPORT} was not written")
    set(failed TRUE)
  else()
    file(READ "${REPORT}" report_text)
    string(REPLACE "|" ";" patterns "${REPORT_EXPECT}")
    foreach(pattern IN LISTS patterns)
      if(NOT report_text MATCHES "${pattern}")
        message(SEND_ERROR "report ${REPORT} does not match '${pattern}'")
        set(failed TRUE)
      endif()
    endforeach()
  endif()
endif()
if(failed)
  message(FATAL_ERROR "check failed: ${PROGRAM} ${args}")
endif()
