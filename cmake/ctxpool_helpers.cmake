# Shared build settings for ctxpool's own targets.

# Warnings for a ctxpool test, sample or benchmark target (never exported to users).
function(ctxpool_target_settings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                           -Wno-sign-conversion)
endfunction()

# Warnings for the library's own sources: the strict set the public headers
# are checked with (tests/consumer/headers), -Wsign-conversion included, as
# errors when CTXPOOL_WERROR is on (the default only for ctxpool's own build).
function(ctxpool_library_settings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                           -Wsign-conversion $<$<BOOL:${CTXPOOL_WERROR}>:-Werror>)
endfunction()

if(CTXPOOL_SANITIZE)
  # Applied to the whole build so that the library and its tests agree.
  add_compile_options(-fsanitize=${CTXPOOL_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${CTXPOOL_SANITIZE})
  if(CTXPOOL_SANITIZE MATCHES "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # Asio's reference counts use fences TSan cannot model; ctxpool's own
    # executors avoid them (they fit in any_io_executor's inline buffer).
    add_compile_options(-Wno-tsan)
  endif()
endif()

# ctxpool_add_layer(<layer> SOURCES <files...> [PUBLIC <deps...>] [PRIVATE <deps...>])
# Defines the library of one folder: target ctxpool_<layer>, alias
# ctxpool::<layer>, headers under <folder>/include. A layer only sees the
# headers of the layers it links, which is how the build enforces the layering.
function(ctxpool_add_layer layer)
  cmake_parse_arguments(arg "" "" "SOURCES;PUBLIC;PRIVATE" ${ARGN})
  set(target ctxpool_${layer})
  add_library(${target} ${arg_SOURCES})
  add_library(ctxpool::${layer} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${layer})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_link_libraries(${target} PUBLIC ${arg_PUBLIC} PRIVATE ${arg_PRIVATE})
  ctxpool_library_settings(${target})
endfunction()

# ctxpool_skip(<option> <what> <why>): switches an optional part off for this
# configure (the cache keeps the user's choice, so installing the package and
# configuring again brings the part back) and says so.
macro(ctxpool_skip option what why)
  set(${option} OFF)
  message(NOTICE "ctxpool: skipping the ${what}: ${why}. The library does not need it; "
                 "-D${option}=OFF skips this part without the note.")
endmacro()
