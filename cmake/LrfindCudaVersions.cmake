# The CUDA that LibTorch was built with, and the check that lrfind's CUDA toolkit has the
# same major version: lrfind's CUDA parts (nccl.h and the toolkit's headers, and with a
# CPU LibTorch its libcudart.so.<major>) must belong to the CUDA of LibTorch's runtime,
# or the process mixes two CUDA majors, which fails on a driver too old for the newer.
#
# lrfind_torch_cuda_version(<version_var> <source_var> PREFIX <LibTorch install prefix>)
#   Sets <version_var> to LibTorch's CUDA version ("12.4", or just the major "12" from a
#   library name) and <source_var> to where it was read; both empty when no source says.
#   Sources, in this order:
#     1. <prefix>/version.py, pip's torch package: `cuda = '12.4'` (or
#        `cuda: Optional[str] = '12.4'`); `None` means a CPU build.
#     2. <prefix>/build-version, the LibTorch zip: "2.5.1+cu124" is CUDA 12.4.
#     3. The CUDA runtime LibTorch's lib/libc10_cuda.so was linked against, from the
#        soname inside it ("libcudart.so.12", or the zip's "libcudart-<hash>.so.12"):
#        the major version only.
#   Caffe2's CMake config (torch 2.x cmake/public/cuda.cmake) is no source: its
#   CUDA_VERSION and CUDAToolkit_VERSION describe the toolkit find_package(CUDAToolkit)
#   finds in this configure run, the same one lrfind uses, not the one LibTorch was built with.
#
# lrfind_parse_torch_version_py(<file> <version_var>)
# lrfind_parse_torch_build_version(<file> <version_var>)
# lrfind_parse_cudart_soname(<library file> <major_var>)
#   The three sources one by one; <var> is empty when the file does not say.
#
# lrfind_check_cuda_versions(TOOLKIT <version> TORCH <version> [TORCH_SOURCE <text>]
#                            [TOOLKIT_ROOT <dir>])
#   FATAL_ERROR when the major versions differ, naming both and what to do.

function(lrfind_parse_torch_version_py file version_var)
  set(version "")
  if(EXISTS "${file}")
    file(STRINGS "${file}" lines REGEX "^cuda[ :]")
    if(lines MATCHES "^cuda[^=]*= *['\"]([0-9]+(\\.[0-9]+)*)['\"]")
      set(version "${CMAKE_MATCH_1}")
    endif()
  endif()
  set(${version_var} "${version}" PARENT_SCOPE)
endfunction()

function(lrfind_parse_torch_build_version file version_var)
  set(version "")
  if(EXISTS "${file}")
    file(STRINGS "${file}" lines LIMIT_COUNT 1)
    # cuXYZ: the last digit is the minor version (cu124 is 12.4, cu92 is 9.2).
    if(lines MATCHES "\\+cu([0-9]+)([0-9])")
      set(version "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")
    endif()
  endif()
  set(${version_var} "${version}" PARENT_SCOPE)
endfunction()

function(lrfind_parse_cudart_soname file major_var)
  set(major "")
  if(EXISTS "${file}")
    # The soname sits in .dynstr near the start of the file; the limit keeps this quick.
    file(STRINGS "${file}" names REGEX "libcudart[-_.a-zA-Z0-9]*\\.so\\.[0-9]+" LIMIT_INPUT 16000000)
    if(names MATCHES "libcudart[-_a-zA-Z0-9]*\\.so\\.([0-9]+)")
      set(major "${CMAKE_MATCH_1}")
    endif()
  endif()
  set(${major_var} "${major}" PARENT_SCOPE)
endfunction()

function(lrfind_torch_cuda_version version_var source_var)
  cmake_parse_arguments(ARG "" "PREFIX" "" ${ARGN})
  set(version "")
  set(source "")
  lrfind_parse_torch_version_py("${ARG_PREFIX}/version.py" version)
  if(version)
    set(source "${ARG_PREFIX}/version.py")
  else()
    lrfind_parse_torch_build_version("${ARG_PREFIX}/build-version" version)
    if(version)
      set(source "${ARG_PREFIX}/build-version")
    else()
      lrfind_parse_cudart_soname("${ARG_PREFIX}/lib/libc10_cuda.so" version)
      if(version)
        set(source "the libcudart that ${ARG_PREFIX}/lib/libc10_cuda.so links")
      endif()
    endif()
  endif()
  set(${version_var} "${version}" PARENT_SCOPE)
  set(${source_var} "${source}" PARENT_SCOPE)
endfunction()

function(lrfind_check_cuda_versions)
  cmake_parse_arguments(ARG "" "TOOLKIT;TORCH;TORCH_SOURCE;TOOLKIT_ROOT" "" ${ARGN})
  foreach(arg TOOLKIT TORCH)
    if(NOT ARG_${arg} MATCHES "^[0-9]+")
      message(FATAL_ERROR "lrfind_check_cuda_versions: ${arg} must be a version, got '${ARG_${arg}}'")
    endif()
  endforeach()
  string(REGEX MATCH "^[0-9]+" toolkit_major "${ARG_TOOLKIT}")
  string(REGEX MATCH "^[0-9]+" torch_major "${ARG_TORCH}")
  if(NOT toolkit_major EQUAL torch_major)
    set(from "")
    if(ARG_TORCH_SOURCE)
      set(from " (read from ${ARG_TORCH_SOURCE})")
    endif()
    set(root "")
    if(ARG_TOOLKIT_ROOT)
      set(root " at ${ARG_TOOLKIT_ROOT}")
    endif()
    message(FATAL_ERROR
      "The CUDA toolkit${root} is CUDA ${ARG_TOOLKIT}, but LibTorch was built with CUDA "
      "${ARG_TORCH}${from}: lrfind's CUDA ${toolkit_major} parts (its NCCL and CUDA headers) would "
      "run beside LibTorch's libcudart.so.${torch_major}. Point CUDAToolkit_ROOT at a CUDA ${torch_major} toolkit, "
      "or use a LibTorch built for CUDA ${toolkit_major}, or configure with "
      "-DLRFIND_WITH_CUDA=OFF (no direct CUDA calls and no NCCL in lrfind). "
      "If the LibTorch version was misread, set -DLRFIND_TORCH_CUDA_VERSION=<major.minor>.")
  endif()
endfunction()
