# cmake -DMODULE_DIR=<repo>/cmake -DWORK_DIR=<scratch> -P find_nccl_test.cmake
#
# cmake/FindNCCL.cmake against fake NCCL installs, configured from a throw-away project
# (no compiler needed), so it runs the same with or without a real NCCL on the machine:
#  - NCCL_HOME (variable, then environment) wins alone: header, library and version all
#    come from it, although a decoy NCCL with a libnccl.so sits in the CUDA toolkit root
#    (the old module took the decoy's library with NCCL_HOME's header);
#  - a new NCCL_HOME in the same build directory searches again;
#  - NCCL_HOME without an NCCL fails the configure, naming it;
#  - without NCCL_HOME, the CUDA toolkit's root comes first (CUDAToolkit_LIBRARY_ROOT, or
#    the parent of CUDAToolkit_BIN_DIR), header and library from the same root: a root with
#    only nccl.h is passed over.
cmake_minimum_required(VERSION 3.18)
foreach(var MODULE_DIR WORK_DIR)
  if(NOT ${var})
    message(FATAL_ERROR "find_nccl_test: pass -D${var}=...")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")

include("${CMAKE_CURRENT_LIST_DIR}/check.cmake")  # check(), fail_check(), finish_checks()

# fake_nccl(<root> <major> <minor> <patch> <library file name>)
function(fake_nccl root major minor patch library)
  file(WRITE "${root}/include/nccl.h"
    "#ifndef NCCL_H_\n#define NCCL_H_\n#define NCCL_MAJOR ${major}\n#define NCCL_MINOR ${minor}\n"
    "#define NCCL_PATCH ${patch}\n#define NCCL_SUFFIX \"\"\n"
    "#define NCCL_VERSION_CODE ${major}${minor}0${patch}\n#endif\n")
  file(WRITE "${root}/lib/${library}" "")  # an empty stub: found, never linked
endfunction()

# Versions no real NCCL has, so a result from a real install cannot pass by chance.
fake_nccl("${WORK_DIR}/pip_nccl" 2 97 3 libnccl.so.2)
fake_nccl("${WORK_DIR}/pip_nccl_new" 2 97 4 libnccl.so.2)
fake_nccl("${WORK_DIR}/decoy_cuda" 2 96 1 libnccl.so)
fake_nccl("${WORK_DIR}/toolkit_nccl" 2 95 7 libnccl.so.2)
fake_nccl("${WORK_DIR}/toolkit_bin_nccl" 2 94 2 libnccl.so.2)
file(MAKE_DIRECTORY "${WORK_DIR}/toolkit_bin_nccl/bin")
fake_nccl("${WORK_DIR}/header_only" 2 93 1 libnccl.so.2)
file(REMOVE "${WORK_DIR}/header_only/lib/libnccl.so.2")

file(WRITE "${WORK_DIR}/project/CMakeLists.txt" [=[
cmake_minimum_required(VERSION 3.18)
project(find_nccl_probe LANGUAGES NONE)
list(APPEND CMAKE_MODULE_PATH "${MODULE_DIR}")
find_package(NCCL)
set(target_location "")
set(target_include "")
if(TARGET NCCL::NCCL)
  get_target_property(target_location NCCL::NCCL IMPORTED_LOCATION)
  get_target_property(target_include NCCL::NCCL INTERFACE_INCLUDE_DIRECTORIES)
endif()
file(WRITE "${CMAKE_BINARY_DIR}/result.cmake"
  "set(found \"${NCCL_FOUND}\")\nset(version \"${NCCL_VERSION}\")\n"
  "set(include_dir \"${NCCL_INCLUDE_DIR}\")\nset(library \"${NCCL_LIBRARY}\")\n"
  "set(target_location \"${target_location}\")\nset(target_include \"${target_include}\")\n")
]=])

# probe(<build dir> <NCCL_HOME in the environment or ""> <cmake -D args...>): configures
# the probe project; sets rc, output and the result.cmake variables.
macro(probe build env_home)
  file(REMOVE "${WORK_DIR}/${build}/result.cmake")
  if("${env_home}" STREQUAL "")
    set(env_arg --unset=NCCL_HOME)
  else()
    set(env_arg "NCCL_HOME=${env_home}")
  endif()
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env ${env_arg}
            ${CMAKE_COMMAND} -S "${WORK_DIR}/project" -B "${WORK_DIR}/${build}" "-DMODULE_DIR=${MODULE_DIR}" ${ARGN}
    RESULT_VARIABLE rc OUTPUT_VARIABLE output ERROR_VARIABLE output)
  foreach(v found version include_dir library target_location target_include)
    set(${v} "")
  endforeach()
  if(EXISTS "${WORK_DIR}/${build}/result.cmake")
    include("${WORK_DIR}/${build}/result.cmake")
  endif()
endmacro()

macro(check_from root version_expected what)
  check("${what}: configure exit code" "${rc}" 0)
  check("${what}: NCCL_FOUND" "${found}" TRUE)
  check("${what}: NCCL_VERSION from nccl.h" "${version}" "${version_expected}")
  check("${what}: NCCL_INCLUDE_DIR" "${include_dir}" "${root}/include")
  check("${what}: NCCL_LIBRARY" "${library}" "${root}/lib/libnccl.so.2")
  check("${what}: NCCL::NCCL location" "${target_location}" "${root}/lib/libnccl.so.2")
  check("${what}: NCCL::NCCL include dir" "${target_include}" "${root}/include")
  if(NOT rc EQUAL 0)
    message(STATUS "configure output:\n${output}")
  endif()
endmacro()

set(decoy "-DCUDAToolkit_LIBRARY_ROOT=${WORK_DIR}/decoy_cuda")

probe(home_variable "" "-DNCCL_HOME=${WORK_DIR}/pip_nccl" ${decoy})
check_from("${WORK_DIR}/pip_nccl" 2.97.3 "NCCL_HOME variable")

probe(home_variable "" "-DNCCL_HOME=${WORK_DIR}/pip_nccl_new" ${decoy})
check_from("${WORK_DIR}/pip_nccl_new" 2.97.4 "NCCL_HOME changed in the same build directory")

probe(home_environment "${WORK_DIR}/pip_nccl" ${decoy})
check_from("${WORK_DIR}/pip_nccl" 2.97.3 "NCCL_HOME environment")

probe(home_bogus "" "-DNCCL_HOME=${WORK_DIR}/no_such_nccl" ${decoy})
check("bogus NCCL_HOME: configure fails" "${rc}" 1)
string(REGEX REPLACE "[ \n]+" " " flat_output "${output}")
if(NOT flat_output MATCHES "NCCL_HOME=${WORK_DIR}/no_such_nccl holds no NCCL")
  fail_check("bogus NCCL_HOME: no clear message naming it; output:\n${output}")
else()
  message(STATUS "ok: bogus NCCL_HOME: the message names it")
endif()

# Without NCCL_HOME: the toolkit root comes before /usr/local/cuda and the system.
probe(toolkit_root "" "-DCUDAToolkit_LIBRARY_ROOT=${WORK_DIR}/toolkit_nccl")
check_from("${WORK_DIR}/toolkit_nccl" 2.95.7 "no NCCL_HOME, CUDA toolkit root")

probe(toolkit_bin "" "-DCUDAToolkit_LIBRARY_ROOT=${WORK_DIR}/header_only"
      "-DCUDAToolkit_BIN_DIR=${WORK_DIR}/toolkit_bin_nccl/bin")
check_from("${WORK_DIR}/toolkit_bin_nccl" 2.94.2 "no NCCL_HOME, a root with only nccl.h, then CUDAToolkit_BIN_DIR's")

finish_checks(find_nccl_test)
message(STATUS "find_nccl_test: all checks passed")
