# lrfind_torch_cxx_standard(<var> TARGET <torch target>)
#
# Sets <var> to the lowest C++ standard, 17 or 20, in which LibTorch's headers compile:
# torch up to 2.11 needs C++17, later ones C++20 (the guards in c10/util/C++17.h,
# ATen/ATen.h and torch/all.h say so with an #error). A CMAKE_CXX_STANDARD given on the
# command line is the only one tried. The probe is <ATen/ATen.h> (ATen's guard; c10 alone
# stays C++17 for header-only users), built with the target's include directories and flags
# but not linked; -Wfatal-errors ends a failing standard at its first error. The result is
# kept in the cache for this compiler, LibTorch and flags, so later configure runs skip the
# probe. Fails the configure when no standard works.

function(lrfind_torch_cxx_standard out_var)
  cmake_parse_arguments(ARG "" "TARGET" "" ${ARGN})
  set(candidates 17 20)
  if(DEFINED CACHE{CMAKE_CXX_STANDARD})
    if(CMAKE_CXX_STANDARD LESS 17)
      message(FATAL_ERROR "CMAKE_CXX_STANDARD=${CMAKE_CXX_STANDARD}: lrfind needs C++17 or later")
    endif()
    set(candidates ${CMAKE_CXX_STANDARD})
  endif()

  get_target_property(include_dirs ${ARG_TARGET} INTERFACE_INCLUDE_DIRECTORIES)
  get_target_property(options ${ARG_TARGET} INTERFACE_COMPILE_OPTIONS)
  set(key "${CMAKE_CXX_COMPILER} ${CMAKE_CXX_COMPILER_VERSION}|${include_dirs}|${options}|${CMAKE_CXX_FLAGS}|${candidates}")
  if(key STREQUAL "${_LRFIND_CXX_STANDARD_KEY}" AND _LRFIND_CXX_STANDARD)
    message(STATUS "lrfind: C++${_LRFIND_CXX_STANDARD} for LibTorch's headers (checked in an earlier configure run)")
    set(${out_var} ${_LRFIND_CXX_STANDARD} PARENT_SCOPE)
    return()
  endif()

  set(dir "${CMAKE_BINARY_DIR}/CMakeFiles/lrfind_cxx_standard")
  file(WRITE "${dir}/probe.cpp"
    "// Written by cmake/LrfindCxxStandard.cmake: does LibTorch compile in this C++ standard?\n"
    "#include <ATen/ATen.h>\n"
    "int lrfind_cxx_standard_probe() { return static_cast<int>(at::kFloat); }\n")
  set(flags "")
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    set(flags -Wfatal-errors)
  endif()
  set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
  set(log "")
  foreach(std IN LISTS candidates)
    string(TIMESTAMP start "%s")
    try_compile(compiles "${dir}/cxx${std}" SOURCES "${dir}/probe.cpp"
                COMPILE_DEFINITIONS ${flags}
                LINK_LIBRARIES ${ARG_TARGET}
                CXX_STANDARD ${std} CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF
                OUTPUT_VARIABLE output)
    string(TIMESTAMP end "%s")
    math(EXPR seconds "${end} - ${start}")
    string(APPEND log "===== C++${std}: ${seconds} s, compiles: ${compiles}\n${output}\n")
    file(WRITE "${dir}/probe.log" "${log}")
    if(compiles)
      message(STATUS "lrfind: C++${std} for LibTorch's headers (<ATen/ATen.h> compiles with it; checked in ${seconds} s)")
      set(_LRFIND_CXX_STANDARD ${std} CACHE INTERNAL "C++ standard LibTorch's headers compile with")
      set(_LRFIND_CXX_STANDARD_KEY "${key}" CACHE INTERNAL "what _LRFIND_CXX_STANDARD was found for")
      set(${out_var} ${std} PARENT_SCOPE)
      return()
    endif()
    string(REGEX MATCH "[^\n]*error[: ][^\n]*" first_error "${output}")
    list(APPEND errors "C++${std}: ${first_error}")
  endforeach()
  unset(_LRFIND_CXX_STANDARD CACHE)
  string(REPLACE ";" ", C++" tried "C++${candidates}")
  string(REPLACE ";" "\n  " errors "${errors}")
  message(FATAL_ERROR
    "LibTorch's headers (<ATen/ATen.h> in ${include_dirs}) compile in none of ${tried} with "
    "${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}:\n  ${errors}\n"
    "Use a compiler that this LibTorch supports (-DCMAKE_CXX_COMPILER=...), or set "
    "-DCMAKE_CXX_STANDARD to the standard it needs. Full output: ${dir}/probe.log")
endfunction()
