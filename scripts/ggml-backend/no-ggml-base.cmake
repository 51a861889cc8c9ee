# Included after Ollama's project() call (CMAKE_PROJECT_INCLUDE) by
# scripts/build-ggml-backend.sh. At the end of the top-level directory it
# unlinks the backend libraries from ggml-base: finetune links the ggml core
# statically and exports it (-rdynamic), so a backend loaded into finetune
# must resolve ggml_* against the executable, never bring a second core.
# The backend keeps ggml-base's headers and public compile definitions.

include_guard(GLOBAL)

function(finetune_unlink_ggml_base)
  get_target_property(defs ggml-base INTERFACE_COMPILE_DEFINITIONS)
  get_target_property(incs ggml-base INTERFACE_INCLUDE_DIRECTORIES)
  add_library(finetune-ggml-headers INTERFACE)
  if(defs)
    set_property(TARGET finetune-ggml-headers PROPERTY INTERFACE_COMPILE_DEFINITIONS "${defs}")
  endif()
  if(incs)
    set_property(TARGET finetune-ggml-headers PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${incs}")
  endif()
  foreach(backend IN LISTS FINETUNE_BACKENDS)
    if(NOT TARGET ${backend})
      message(FATAL_ERROR "finetune: target ${backend} was not configured (is its toolkit found?)")
    endif()
    get_target_property(libs ${backend} LINK_LIBRARIES)
    list(TRANSFORM libs REPLACE "^ggml-base$" "finetune-ggml-headers")
    set_property(TARGET ${backend} PROPERTY LINK_LIBRARIES "${libs}")
    # Whatever RPATH CMake computes for the toolkit's libraries, also look
    # beside the backend itself (bin/lib).
    set_property(TARGET ${backend} APPEND PROPERTY BUILD_RPATH "$ORIGIN")
    if(FINETUNE_RPATH)
      set_property(TARGET ${backend} APPEND PROPERTY BUILD_RPATH "${FINETUNE_RPATH}")
    endif()
    message(STATUS "finetune: ${backend} links ${libs} (no ggml-base: the ggml core comes from the executable)")
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL finetune_unlink_ggml_base)
