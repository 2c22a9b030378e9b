# cmake -DMODULE_DIR=<repo>/cmake -DWORK_DIR=<scratch> [-DCXX_COMPILER=...] [-DLAUNCHER=...]
#       -P gtest_abi_test.cmake
#
# cmake/LrfindGTest.cmake with a stand-in `torch` target that carries the old C++ string ABI
# (_GLIBCXX_USE_CXX11_ABI=0, as pip's torch 2.6 and older): GoogleTest is built from
# source with that ABI, and a test binary compiled with it links and passes (against the
# system's libgtest, built with the new ABI, it does not link). With the toolchain's own
# ABI, the system's GoogleTest is used and nothing is built. Skips without libstdc++ or
# without GoogleTest's sources.
cmake_minimum_required(VERSION 3.18)
foreach(var MODULE_DIR WORK_DIR)
  if(NOT ${var})
    message(FATAL_ERROR "gtest_abi_test: pass -D${var}=...")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
if(NOT EXISTS /usr/src/googletest/googletest/CMakeLists.txt)
  message(STATUS "SKIP: no GoogleTest sources in /usr/src/googletest (Debian: libgtest-dev)")
  return()
endif()

file(WRITE "${WORK_DIR}/project/CMakeLists.txt" [=[
cmake_minimum_required(VERSION 3.18)
project(gtest_abi_probe LANGUAGES C CXX)
set(CMAKE_CXX_STANDARD 17)
list(APPEND CMAKE_MODULE_PATH "${MODULE_DIR}")
# The compiler's default ABI, found here independently of the module.
include(CheckCXXSourceCompiles)
set(toolchain_abi "")
foreach(abi 0 1)
  set(CMAKE_REQUIRED_QUIET ON)
  check_cxx_source_compiles("#include <string>
#if !defined(_GLIBCXX_USE_CXX11_ABI) || _GLIBCXX_USE_CXX11_ABI != ${abi}
#error other ABI
#endif
int main() { return 0; }" probe_default_abi_${abi})
  if(probe_default_abi_${abi})
    set(toolchain_abi ${abi})
  endif()
endforeach()
file(WRITE "${CMAKE_BINARY_DIR}/toolchain_abi.txt" "${toolchain_abi}")
add_library(torch INTERFACE IMPORTED)
set_property(TARGET torch PROPERTY INTERFACE_COMPILE_OPTIONS "-D_GLIBCXX_USE_CXX11_ABI=${TORCH_ABI}")
include(LrfindGTest)
add_executable(abi_test abi_test.cpp)
target_link_libraries(abi_test PRIVATE torch GTest::gtest GTest::gtest_main)
]=])
# std::string crosses into libgtest: test registration (CodeLocation) and EXPECT_EQ's
# failure text.
file(WRITE "${WORK_DIR}/project/abi_test.cpp" [=[
#include <gtest/gtest.h>
#include <string>
TEST(Abi, StringsCrossIntoGoogleTest) {
  std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  EXPECT_EQ(name, std::string("StringsCrossIntoGoogleTest"));
#if _GLIBCXX_USE_CXX11_ABI != TORCH_ABI_EXPECTED
#error this test was not compiled with LibTorch's ABI
#endif
}
]=])

set(compiler_args "")
if(CXX_COMPILER)
  list(APPEND compiler_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(LAUNCHER)
  list(APPEND compiler_args "-DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}")
endif()

# configure(<build dir> <torch abi>): sets rc and output.
macro(configure build abi)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -S "${WORK_DIR}/project" -B "${WORK_DIR}/${build}" "-DMODULE_DIR=${MODULE_DIR}"
            "-DTORCH_ABI=${abi}" "-DCMAKE_CXX_FLAGS=-DTORCH_ABI_EXPECTED=${abi}" ${compiler_args}
    RESULT_VARIABLE rc OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAIL: configure with LibTorch's ABI ${abi}:\n${output}")
  endif()
endmacro()

configure(probe_abi_1 1)
file(READ "${WORK_DIR}/probe_abi_1/toolchain_abi.txt" toolchain_abi)
file(REMOVE_RECURSE "${WORK_DIR}/probe_abi_1")
if(toolchain_abi STREQUAL "")
  message(STATUS "SKIP: the standard library is not libstdc++ (no _GLIBCXX_USE_CXX11_ABI)")
  return()
endif()
if(toolchain_abi STREQUAL "1")
  set(other_abi 0)
else()
  set(other_abi 1)
endif()

# The other ABI: GoogleTest from source, and a test that links and passes.
configure(probe_abi_${other_abi} ${other_abi})
set(configure_output "${output}")
execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}/probe_abi_${other_abi}" --target abi_test
                RESULT_VARIABLE rc OUTPUT_VARIABLE output ERROR_VARIABLE output)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "FAIL: the test with ABI ${other_abi} does not build or link:\n${output}")
endif()
message(STATUS "ok: ABI ${other_abi}: the test links")
execute_process(COMMAND "${WORK_DIR}/probe_abi_${other_abi}/abi_test"
                RESULT_VARIABLE rc OUTPUT_VARIABLE output ERROR_VARIABLE output)
if(NOT rc EQUAL 0 OR NOT output MATCHES "1 test.*PASSED")
  message(FATAL_ERROR "FAIL: the test with ABI ${other_abi} does not pass:\n${output}")
endif()
message(STATUS "ok: ABI ${other_abi}: the test passes")
if(NOT configure_output MATCHES "lrfind: GoogleTest built from [^\n]*_GLIBCXX_USE_CXX11_ABI ${other_abi}")
  message(FATAL_ERROR "FAIL: LibTorch with ABI ${other_abi}: no status line saying GoogleTest was built from source:\n${configure_output}")
endif()
message(STATUS "ok: ABI ${other_abi}: the status line says GoogleTest was built from source")

# The toolchain's ABI: the system's GoogleTest, nothing built.
configure(probe_abi_${toolchain_abi} ${toolchain_abi})
if(NOT output MATCHES "lrfind: GoogleTest [0-9.]* *from the system")
  message(FATAL_ERROR "FAIL: LibTorch with the toolchain's ABI ${toolchain_abi} did not use the system's GoogleTest:\n${output}")
endif()
message(STATUS "ok: ABI ${toolchain_abi} (the toolchain's): the system's GoogleTest")

message(STATUS "gtest_abi_test: all checks passed")
