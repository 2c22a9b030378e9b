# GoogleTest with LibTorch's C++ string ABI: provides GTest::gtest and GTest::gtest_main.
#
# Tests compile with LibTorch's _GLIBCXX_USE_CXX11_ABI (the torch target passes it on).
# torch 2.6 and older from pip use the old ABI (0), and a system libgtest built with the
# toolchain's default (1 on GCC >= 5) then fails to link. So:
#   - LibTorch's ABI equals the toolchain's default: find_package(GTest), the system's;
#   - it differs: GoogleTest is built from source (GTEST_SOURCE_DIR, default Debian's
#     /usr/src/googletest from libgtest-dev) with LibTorch's ABI.
# LRFIND_FORCE_GTEST_FROM_SOURCE=ON builds from source even when the ABIs agree (to test
# this path on a machine whose LibTorch matches).
#
# lrfind_torch_cxx11_abi(<var> [TARGET <torch target>]): 0, 1, or empty when LibTorch sets
#   no ABI, from TORCH_CXX_FLAGS, then the compile options and definitions of the target
#   and of torch_cpu and c10.
# lrfind_toolchain_cxx11_abi(<var>): the compiler's default ABI (0 or 1), empty when the
#   standard library is not libstdc++; one try-compile, cached.

option(LRFIND_FORCE_GTEST_FROM_SOURCE "Build GoogleTest from GTEST_SOURCE_DIR even when the system's would do" OFF)
set(GTEST_SOURCE_DIR /usr/src/googletest CACHE PATH "GoogleTest's sources, used when LibTorch's C++ ABI is not the toolchain's")

function(lrfind_torch_cxx11_abi out_var)
  cmake_parse_arguments(ARG "" "TARGET" "" ${ARGN})
  if(NOT ARG_TARGET)
    set(ARG_TARGET torch)
  endif()
  set(texts "${TORCH_CXX_FLAGS}")
  foreach(target ${ARG_TARGET} torch_cpu c10)
    if(TARGET ${target})
      foreach(property INTERFACE_COMPILE_OPTIONS INTERFACE_COMPILE_DEFINITIONS)
        get_target_property(value ${target} ${property})
        if(value)
          list(APPEND texts "${value}")
        endif()
      endforeach()
    endif()
  endforeach()
  set(abi "")
  foreach(text IN LISTS texts)
    if(text MATCHES "_GLIBCXX_USE_CXX11_ABI=([01])")
      set(abi ${CMAKE_MATCH_1})
      break()
    endif()
  endforeach()
  set(${out_var} "${abi}" PARENT_SCOPE)
endfunction()

function(lrfind_toolchain_cxx11_abi out_var)
  if(DEFINED _LRFIND_TOOLCHAIN_CXX11_ABI)
    set(${out_var} "${_LRFIND_TOOLCHAIN_CXX11_ABI}" PARENT_SCOPE)
    return()
  endif()
  # The compiler's own default: an ABI define the project's flags carry does not count.
  string(REGEX REPLACE "-D_GLIBCXX_USE_CXX11_ABI=[01]" "" CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS}")
  set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
  set(dir "${CMAKE_BINARY_DIR}/CMakeFiles/lrfind_cxx11_abi")
  set(abi "")
  foreach(candidate 0 1)
    file(WRITE "${dir}/abi${candidate}.cpp"
      "#include <string>\n"
      "#if !defined(_GLIBCXX_USE_CXX11_ABI) || _GLIBCXX_USE_CXX11_ABI != ${candidate}\n"
      "#error not this ABI\n#endif\n"
      "std::string lrfind_abi_probe() { return {}; }\n")
    try_compile(is_default "${dir}/build${candidate}" "${dir}/abi${candidate}.cpp")
    if(is_default)
      set(abi ${candidate})
      break()
    endif()
  endforeach()
  set(_LRFIND_TOOLCHAIN_CXX11_ABI "${abi}" CACHE INTERNAL "The C++ compiler's default _GLIBCXX_USE_CXX11_ABI")
  set(${out_var} "${abi}" PARENT_SCOPE)
endfunction()

lrfind_torch_cxx11_abi(_lrfind_torch_abi)
set(_lrfind_toolchain_abi "")
if(NOT _lrfind_torch_abi STREQUAL "")
  lrfind_toolchain_cxx11_abi(_lrfind_toolchain_abi)
endif()

set(_lrfind_gtest_reason "")
if(LRFIND_FORCE_GTEST_FROM_SOURCE)
  set(_lrfind_gtest_reason "LRFIND_FORCE_GTEST_FROM_SOURCE=ON")
elseif(NOT _lrfind_torch_abi STREQUAL "" AND NOT _lrfind_toolchain_abi STREQUAL ""
       AND NOT _lrfind_torch_abi STREQUAL _lrfind_toolchain_abi)
  set(_lrfind_gtest_reason "LibTorch's _GLIBCXX_USE_CXX11_ABI=${_lrfind_torch_abi}, the toolchain's ${_lrfind_toolchain_abi}")
endif()

if(_lrfind_gtest_reason STREQUAL "")
  find_package(GTest REQUIRED)
  if(_lrfind_torch_abi STREQUAL "")
    set(_lrfind_torch_abi "not set")
  endif()
  message(STATUS "lrfind: GoogleTest ${GTest_VERSION} from the system (LibTorch's _GLIBCXX_USE_CXX11_ABI: "
                 "${_lrfind_torch_abi}, the toolchain's default)")
else()
  if(NOT EXISTS "${GTEST_SOURCE_DIR}/googletest/CMakeLists.txt")
    message(FATAL_ERROR
      "GoogleTest has to be built from source (${_lrfind_gtest_reason}), but GTEST_SOURCE_DIR="
      "${GTEST_SOURCE_DIR} holds no GoogleTest sources (googletest/CMakeLists.txt). Install "
      "libgtest-dev (Debian: /usr/src/googletest) or point -DGTEST_SOURCE_DIR at a GoogleTest "
      "checkout, or configure with -DLRFIND_BUILD_TESTS=OFF.")
  endif()
  # Only the two libraries: no gmock, nothing installed with lrfind (GoogleTest's top-level
  # CMakeLists sets CMP0077, so its option()s take these variables).
  set(BUILD_GMOCK OFF)
  set(INSTALL_GTEST OFF)
  add_subdirectory("${GTEST_SOURCE_DIR}" "${CMAKE_BINARY_DIR}/googletest" EXCLUDE_FROM_ALL)
  foreach(_lrfind_target gtest gtest_main)
    if(NOT _lrfind_torch_abi STREQUAL "")
      target_compile_definitions(${_lrfind_target} PUBLIC _GLIBCXX_USE_CXX11_ABI=${_lrfind_torch_abi})
    endif()
    # Its headers are not lrfind's: no warnings from them, as from the system's.
    set_property(TARGET ${_lrfind_target} PROPERTY INTERFACE_SYSTEM_INCLUDE_DIRECTORIES
                 "$<TARGET_PROPERTY:${_lrfind_target},INTERFACE_INCLUDE_DIRECTORIES>")
    if(NOT TARGET GTest::${_lrfind_target})
      add_library(GTest::${_lrfind_target} ALIAS ${_lrfind_target})
    endif()
  endforeach()
  if(_lrfind_torch_abi STREQUAL "")
    set(_lrfind_torch_abi "not set")
  endif()
  message(STATUS "lrfind: GoogleTest built from ${GTEST_SOURCE_DIR}, _GLIBCXX_USE_CXX11_ABI "
                 "${_lrfind_torch_abi} as LibTorch's (${_lrfind_gtest_reason})")
endif()
