# cmake -DMODULE_DIR=<repo>/cmake -DWORK_DIR=<scratch> -P cuda_versions_test.cmake
#
# cmake/LrfindCudaVersions.cmake: LibTorch's CUDA version read from pip's torch/version.py,
# a LibTorch zip's build-version and the libcudart soname inside libc10_cuda.so, in that
# order; and the toolkit check: CUDA 13.0 against LibTorch's 12.4 fails with a message
# naming both versions and the way out, 13.0 against 13.0 (or 13.2) passes.
# Run with -DCHECK_TOOLKIT=... -DCHECK_TORCH=..., the script only calls the check (a
# FATAL_ERROR ends a cmake -P run, so the parent runs each check in a child process).
cmake_minimum_required(VERSION 3.18)
foreach(var MODULE_DIR WORK_DIR)
  if(NOT ${var})
    message(FATAL_ERROR "cuda_versions_test: pass -D${var}=...")
  endif()
endforeach()
include("${MODULE_DIR}/LrfindCudaVersions.cmake")

if(DEFINED CHECK_TOOLKIT)
  lrfind_check_cuda_versions(TOOLKIT "${CHECK_TOOLKIT}" TORCH "${CHECK_TORCH}"
                             TORCH_SOURCE "torch/version.py" TOOLKIT_ROOT /opt/cuda-test)
  message(STATUS "check passed")
  return()
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
include("${CMAKE_CURRENT_LIST_DIR}/check.cmake")  # check(), fail_check(), finish_checks()

# pip: torch/version.py as torch 2.x writes it, and as torch 1.x did.
file(WRITE "${WORK_DIR}/pip/version.py"
  "from typing import Optional\n\n__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip']\n"
  "__version__ = '2.5.1+cu124'\ndebug = False\ncuda: Optional[str] = '12.4'\n"
  "git_version = 'a8d6afb511a69687bbb2b7e88a3cf67917e1697e'\nhip: Optional[str] = None\n")
lrfind_parse_torch_version_py("${WORK_DIR}/pip/version.py" v)
check("version.py of torch 2.x" "${v}" 12.4)
file(WRITE "${WORK_DIR}/pip1/version.py" "__version__ = '1.13.1+cu117'\ndebug = False\ncuda = '11.7'\nhip = None\n")
lrfind_parse_torch_version_py("${WORK_DIR}/pip1/version.py" v)
check("version.py of torch 1.x" "${v}" 11.7)
file(WRITE "${WORK_DIR}/pipcpu/version.py" "__version__ = '2.5.1+cpu'\ncuda: Optional[str] = None\n")
lrfind_parse_torch_version_py("${WORK_DIR}/pipcpu/version.py" v)
check("version.py of a CPU build" "${v}" "")

# The LibTorch zip's build-version.
foreach(case "2.5.1+cu124|12.4" "2.9.0+cu130|13.0" "1.10.2+cu102|10.2" "1.4.0+cu92|9.2" "2.5.1+cpu|")
  string(REPLACE "|" ";" case "${case}")
  list(GET case 0 text)
  list(LENGTH case n)
  set(want "")
  if(n GREATER 1)
    list(GET case 1 want)
  endif()
  file(WRITE "${WORK_DIR}/zip/build-version" "${text}\n")
  lrfind_parse_torch_build_version("${WORK_DIR}/zip/build-version" v)
  check("build-version ${text}" "${v}" "${want}")
endforeach()

# The soname in libc10_cuda.so: pip links libcudart.so.12, the zip bundles a hashed copy.
file(WRITE "${WORK_DIR}/so/pip/lib/libc10_cuda.so" "ELF junk\nlibc10.so\nlibcudart.so.12\nlibstdc++.so.6\n")
lrfind_parse_cudart_soname("${WORK_DIR}/so/pip/lib/libc10_cuda.so" v)
check("libcudart.so.12 in libc10_cuda.so" "${v}" 12)
file(WRITE "${WORK_DIR}/so/zip/lib/libc10_cuda.so" "libc10.so\nlibcudart-9335f6a2.so.11.0\n")
lrfind_parse_cudart_soname("${WORK_DIR}/so/zip/lib/libc10_cuda.so" v)
check("libcudart-<hash>.so.11.0 in libc10_cuda.so" "${v}" 11)

# The order of the sources: version.py, then build-version, then the soname.
file(WRITE "${WORK_DIR}/all/version.py" "cuda = '12.6'\n")
file(WRITE "${WORK_DIR}/all/build-version" "2.5.1+cu118\n")
file(WRITE "${WORK_DIR}/all/lib/libc10_cuda.so" "libcudart.so.10\n")
lrfind_torch_cuda_version(v source PREFIX "${WORK_DIR}/all")
check("version.py first" "${v} from ${source}" "12.6 from ${WORK_DIR}/all/version.py")
file(REMOVE "${WORK_DIR}/all/version.py")
lrfind_torch_cuda_version(v source PREFIX "${WORK_DIR}/all")
check("build-version second" "${v} from ${source}" "11.8 from ${WORK_DIR}/all/build-version")
file(REMOVE "${WORK_DIR}/all/build-version")
lrfind_torch_cuda_version(v source PREFIX "${WORK_DIR}/all")
check("soname third" "${v}" 10)
file(REMOVE "${WORK_DIR}/all/lib/libc10_cuda.so")
lrfind_torch_cuda_version(v source PREFIX "${WORK_DIR}/all")
check("no source" "${v}|${source}" "|")

# The check, in child processes.
macro(run_check toolkit torch)
  execute_process(COMMAND ${CMAKE_COMMAND} "-DMODULE_DIR=${MODULE_DIR}" "-DWORK_DIR=${WORK_DIR}"
                          "-DCHECK_TOOLKIT=${toolkit}" "-DCHECK_TORCH=${torch}"
                          -P "${CMAKE_CURRENT_LIST_FILE}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE output ERROR_VARIABLE output)
  string(REGEX REPLACE "[ \n]+" " " output "${output}")
endmacro()
run_check(13.0.88 12.4)
check("toolkit 13.0.88, LibTorch 12.4: fails" "${rc}" 1)
foreach(phrase "CUDA toolkit at /opt/cuda-test is CUDA 13.0.88"
               "LibTorch was built with CUDA 12.4 (read from torch/version.py)"
               "Point CUDAToolkit_ROOT at a CUDA 12 toolkit" "-DLRFIND_WITH_CUDA=OFF")
  string(FIND "${output}" "${phrase}" at)
  if(at LESS 0)
    fail_check("the mismatch message lacks '${phrase}':\n${output}")
  else()
    message(STATUS "ok: the mismatch message says '${phrase}'")
  endif()
endforeach()
run_check(12.4 13.0)
check("toolkit 12.4, LibTorch 13.0: fails" "${rc}" 1)
run_check(13.0 13.0)
check("toolkit 13.0, LibTorch 13.0: passes" "${rc}" 0)
run_check(13.2.51 13.0)
check("toolkit 13.2.51, LibTorch 13.0 (same major): passes" "${rc}" 0)
run_check(12.8 12)
check("toolkit 12.8, LibTorch 12 (major from the soname): passes" "${rc}" 0)

finish_checks(cuda_versions_test)
message(STATUS "cuda_versions_test: all checks passed")
