# cmake -DMODULE_DIR=<repo>/cmake -DWORK_DIR=<scratch> [-DCXX_COMPILER=...] -P cxx_standard_test.cmake
#
# cmake/LrfindCxxStandard.cmake with stand-in LibTorch headers (an ATen/ATen.h whose guard
# asks for a standard, as torch's does) behind a stand-in `torch` target: the lowest
# standard that compiles is chosen (17, or 20 when the header needs it), the target's
# include directories and compile options are used, a later configure run reuses the
# result, a CMAKE_CXX_STANDARD from the command line is the only one tried, and headers that
# compile with none fail the configure with a message that says so.
cmake_minimum_required(VERSION 3.18)
foreach(var MODULE_DIR WORK_DIR)
  if(NOT ${var})
    message(FATAL_ERROR "cxx_standard_test: pass -D${var}=...")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")

include("${CMAKE_CURRENT_LIST_DIR}/check.cmake")  # check(), fail_check(), finish_checks()

file(WRITE "${WORK_DIR}/project/CMakeLists.txt" [=[
cmake_minimum_required(VERSION 3.18)
project(cxx_standard_probe LANGUAGES CXX)
list(APPEND CMAKE_MODULE_PATH "${MODULE_DIR}")
add_library(torch INTERFACE IMPORTED)
set_target_properties(torch PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${HEADERS}"
                                       INTERFACE_COMPILE_OPTIONS "-DLRFIND_FROM_TORCH_TARGET=1")
include(LrfindCxxStandard)
lrfind_torch_cxx_standard(standard TARGET torch)
message(STATUS "chosen standard: ${standard}")
]=])

# headers(<name> <guard>): a stand-in include directory whose ATen/ATen.h holds <guard>.
function(headers name guard)
  file(WRITE "${WORK_DIR}/${name}/ATen/ATen.h"
    "#pragma once\n${guard}\n"
    "#ifndef LRFIND_FROM_TORCH_TARGET\n#error the torch target's compile options are missing\n#endif\n"
    "namespace at { enum ScalarType { kFloat = 6 }; }\n")
endfunction()
headers(needs17 "#if __cplusplus < 201703L\n#error C++17 or later compatible compiler is required to use ATen.\n#endif")
headers(needs20 "#if __cplusplus < 202002L\n#error C++20 or later compatible compiler is required to use ATen.\n#endif")
headers(needs_none "#error no standard will do")

set(compiler_args "")
if(CXX_COMPILER)
  set(compiler_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
# probe(<build dir> <headers> [-D...]): sets rc and output (one line).
macro(probe build headers)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -S "${WORK_DIR}/project" -B "${WORK_DIR}/${build}" "-DMODULE_DIR=${MODULE_DIR}"
            "-DHEADERS=${WORK_DIR}/${headers}" ${compiler_args} ${ARGN}
    RESULT_VARIABLE rc OUTPUT_VARIABLE output ERROR_VARIABLE output)
  string(REGEX REPLACE "[ \n]+" " " output "${output}")
endmacro()
macro(expect what pattern)
  if(output MATCHES "${pattern}")
    message(STATUS "ok: ${what}")
  else()
    fail_check("${what}: no '${pattern}' in: ${output}")
  endif()
endmacro()

probe(b17 needs17)
expect("C++17 headers: C++17, with the target's flags" "chosen standard: 17")
expect("C++17 headers: the status line says it" "lrfind: C[+][+]17 for LibTorch's headers .*checked in [0-9]+ s")
probe(b20 needs20)
expect("C++20 headers: C++20" "chosen standard: 20")
probe(b20 needs20)
expect("C++20 headers, again: the earlier result" "C[+][+]20 for LibTorch's headers [(]checked in an earlier configure run[)].*chosen standard: 20")
probe(b17_user needs17 -DCMAKE_CXX_STANDARD=20)
expect("CMAKE_CXX_STANDARD=20 given: only 20" "chosen standard: 20")
probe(b_none needs_none)
if(rc EQUAL 0)
  fail_check("headers that compile with no standard: the configure passed")
endif()
expect("headers that compile with no standard: the message"
       "LibTorch's headers [(]<ATen/ATen.h> in [^)]*needs_none[)] compile in none of C[+][+]17, C[+][+]20 .*no standard will do")

finish_checks(cxx_standard_test)
message(STATUS "cxx_standard_test: all checks passed")
