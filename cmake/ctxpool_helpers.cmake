# Shared build settings for ctxpool's own targets.

# Warnings and sanitizer flags for a ctxpool target (never exported to users).
function(ctxpool_target_settings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                           -Wno-sign-conversion)
endfunction()

if(CTXPOOL_SANITIZE)
  # Applied to the whole build so that the library and its tests agree.
  add_compile_options(-fsanitize=${CTXPOOL_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${CTXPOOL_SANITIZE})
endif()
