# shellcheck shell=bash
# Sets up this shell to build and test lrfind with the Debian 12 packages that
# launch/gpu_bundle.sh downloaded (HDF5, Open MPI, CLI11, nlohmann-json, GoogleTest), on
# a machine that has a compiler, CMake and LibTorch but none of those and no network
# (the lent GPU machine). Meant to be sourced by bash:
#
#   source launch/gpu_env.sh <debs-dir> <prefix> [extra-cmake-prefix ...]
#   cmake -S . -B build-gpu "${GPU_ENV_CMAKE_ARGS[@]}" -DCMAKE_IGNORE_PREFIX_PATH=/usr ...
#
# It unpacks every .deb listed in <debs-dir>/MANIFEST into the private <prefix> with
# dpkg-deb -x (never into /; not again when <prefix> was unpacked from the same
# MANIFEST): the "core" packages into <prefix>, the "fallback" ones into
# <prefix>/fallback. It re-points symlinks that point to an absolute /usr/... path into
# the prefix, adds the links Debian's update-alternatives would make (mpirun, mpiexec,
# mpicc, ...), and links into <prefix>/.gpu_env/fallback-lib only the fallback libraries
# whose soname this machine's loader cannot find (or finds too old), so the machine's own
# copies of libcurl, libssl, libibverbs, ... win where they exist.
#
# Exports: PATH (<prefix>/usr/bin first), LD_LIBRARY_PATH (<prefix>/usr/lib/<multiarch>,
# then the fallback links), Open MPI's relocation variables (OPAL_PREFIX and the
# OPAL_*DIR that Debian's layout needs: libdir, pkglibdir with the MCA plugins,
# pkgdatadir with the help and wrapper-data files, sysconfdir with
# openmpi-mca-params.conf), PMIx's (PMIX_PREFIX, ...), HWLOC_PLUGINS_PATH (so hwloc does
# not load a different hwloc's plugins), GPU_ENV_PREFIX, GPU_ENV_PREFIX_PATH (the
# bundle's own ;-list for CMAKE_PREFIX_PATH, for callers that compose their own), and
# sets the bash array GPU_ENV_CMAKE_ARGS: CMAKE_PREFIX_PATH (the extra prefixes given,
# e.g. torch's, then $CMAKE_PREFIX_PATH from the environment, then the bundle's),
# HDF5_ROOT, the FindMPI settings that need no wrapper compiler, MPIEXEC_EXECUTABLE,
# GTest_DIR, GTEST_SOURCE_DIR, CLI11_DIR, nlohmann_json_DIR.
#
# Prints one summary line; returns non-zero with a message when something is missing.
# Never exits the calling shell and leaves its shell options alone. Sourcing it again
# in the same shell does not stack PATH entries.
#
# Not covered: the compiler's default include path (/usr/include) stays searched after
# the prefix's, so a target that includes e.g. <nlohmann/json.hpp> without linking
# nlohmann_json::nlohmann_json builds here against the system's copy and fails only on a
# machine without it; check a build's dependency files for /usr/include/{CLI,nlohmann,
# gtest,hdf5} to be sure.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "gpu_env.sh: source it: source ${BASH_SOURCE[0]} <debs-dir> <prefix>" >&2
  exit 2
fi

_gpu_env_fail() { echo "gpu_env.sh: $*" >&2; return 1; }

# _gpu_env_unpack <deb> <dir>: dpkg-deb -x, or ar + tar where dpkg is missing.
_gpu_env_unpack() {
  if command -v dpkg-deb >/dev/null 2>&1; then
    dpkg-deb -x "$1" "$2"
  else
    local member
    member="$(ar t "$1" | grep '^data\.tar')" || return 1
    ar p "$1" "$member" | tar -x -a -f - -C "$2" 2>/dev/null ||
      ar p "$1" "$member" | tar -x -J -f - -C "$2"
  fi
}

# _gpu_env_fix_links <root>: a symlink to /usr/x inside the unpacked tree points to
# <root>/usr/x instead (relative, so the prefix can move).
_gpu_env_fix_links() {
  local root="$1" link target n=0
  while IFS= read -r -d '' link; do
    target="$(readlink "$link")"
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$root$target")" "$link" || return 1
    n=$((n + 1))
  done < <(find "$root" -path "$root/fallback" -prune -o -type l -lname '/*' -print0)
  echo "$n"
}

_gpu_env_main() {
  if (($# < 2)); then
    _gpu_env_fail "usage: source launch/gpu_env.sh <debs-dir> <prefix> [extra-cmake-prefix ...]"
    return
  fi
  local debs="$1" prefix="$2"
  shift 2
  local -a extra_prefixes=("$@")
  local manifest="$debs/MANIFEST"
  [[ -f "$manifest" ]] ||
    { _gpu_env_fail "no $manifest: run launch/gpu_bundle.sh where apt works, and carry .gpu-deps"; return; }
  [[ "$(uname -m)" == x86_64 ]] || { _gpu_env_fail "the bundle is amd64, this is $(uname -m)"; return; }
  local tool
  for tool in ldd realpath find tar; do
    command -v "$tool" >/dev/null 2>&1 || { _gpu_env_fail "needs $tool"; return; }
  done
  command -v dpkg-deb >/dev/null 2>&1 || command -v ar >/dev/null 2>&1 ||
    { _gpu_env_fail "needs dpkg-deb or ar to unpack .deb files"; return; }

  prefix="$(realpath -m "$prefix")"
  case "$prefix" in
    / | /usr | /usr/* | /bin | /lib | /lib64 | /etc | /opt | "$HOME")
      _gpu_env_fail "refusing prefix $prefix: use a private directory such as /tmp/gpu-prefix"; return ;;
  esac
  local state="$prefix/.gpu_env"
  local multiarch=x86_64-linux-gnu
  local libdir="$prefix/usr/lib/$multiarch"

  # 1. Unpack, unless this prefix was unpacked from the same MANIFEST.
  local npkg ncore nfallback name
  npkg="$(grep -vc '^#' "$manifest")"
  ncore="$(awk -F'\t' '!/^#/ && $4 == "core"' "$manifest" | wc -l)"
  nfallback=$((npkg - ncore))
  if [[ -f "$state/complete" ]] && cmp -s "$state/MANIFEST" "$manifest"; then
    :
  else
    if [[ -e "$prefix" && ! -d "$state" ]] && [[ -n "$(ls -A "$prefix" 2>/dev/null)" ]]; then
      _gpu_env_fail "$prefix exists, is not empty and was not made by gpu_env.sh; pick another prefix"
      return
    fi
    if ! { rm -rf "$prefix" && mkdir -p "$state" "$prefix/fallback"; }; then
      _gpu_env_fail "cannot create $prefix"
      return
    fi
    local pkg size role file dir
    while IFS=$'\t' read -r pkg _ size role file; do
      [[ "$pkg" == \#* || -z "$pkg" ]] && continue
      [[ -f "$debs/$file" ]] ||
        { _gpu_env_fail "$debs/$file (package $pkg) is missing: rerun launch/gpu_bundle.sh"; return; }
      [[ "$(stat -c %s "$debs/$file")" == "$size" ]] ||
        { _gpu_env_fail "$debs/$file has the wrong size: rerun launch/gpu_bundle.sh"; return; }
      case "$role" in
        core) dir="$prefix" ;;
        fallback) dir="$prefix/fallback" ;;
        *) _gpu_env_fail "$manifest: unknown role '$role' for $pkg"; return ;;
      esac
      _gpu_env_unpack "$debs/$file" "$dir" || { _gpu_env_fail "cannot unpack $debs/$file"; return; }
    done <"$manifest"
    if ! { _gpu_env_fix_links "$prefix" >/dev/null && _gpu_env_fix_links "$prefix/fallback" >/dev/null; }; then
      _gpu_env_fail "cannot re-point absolute symlinks"
      return
    fi
    # What update-alternatives makes when openmpi-bin and libopenmpi-dev are installed.
    for name in mpirun mpiexec mpicc mpicxx mpic++ mpiCC; do
      ln -sfn "$name.openmpi" "$prefix/usr/bin/$name"
    done
    ln -sfn ../../lib/$multiarch/openmpi/include "$prefix/usr/include/$multiarch/mpi"
    ln -sfn openmpi/lib/libmpi.so "$libdir/libmpi.so"
    cp "$manifest" "$state/MANIFEST" && touch "$state/complete"
  fi
  [[ -x "$prefix/usr/bin/orterun" && -f "$libdir/libmpi.so.40" && -f "$libdir/hdf5/serial/libhdf5.so" ]] ||
    { _gpu_env_fail "$prefix lacks mpirun, libmpi or libhdf5 after unpacking: is $manifest complete?"; return; }

  # 2. Fallback libraries: link those whose soname the loader cannot resolve (or resolves
  #    to a copy lacking a symbol version) for the bundle's binaries, until nothing changes.
  local shim="$state/fallback-lib"
  rm -rf "$shim" && mkdir -p "$shim"
  local -A provides=()
  local f
  # By file name, and by the name cut to .so.<major> (the soname), which links made by
  # update-alternatives would carry (libpsm-infinipath1 ships only libpsm_infinipath.so.1.16).
  while IFS= read -r f; do
    name="$(basename "$f")"
    [[ -n "${provides[$name]:-}" ]] || provides[$name]="$f"
    [[ "$name" =~ ^(.*\.so\.[0-9]+)\. && -z "${provides[${BASH_REMATCH[1]}]:-}" ]] &&
      provides[${BASH_REMATCH[1]}]="$f"
  done < <(ls -d "$prefix"/fallback/{usr/,}lib/$multiarch/lib*.so.* 2>/dev/null
           find "$prefix/fallback" -name 'lib*.so.*' \( -type f -o -type l \) 2>/dev/null)
  local -a elves=()
  while IFS= read -r -d '' f; do
    elves+=("$f")
  done < <(find "$libdir" "$prefix/usr/bin" -maxdepth 1 \( -name '*.so.*' -o -perm -u+x \) \
             -type f -print0 2>/dev/null
           find "$libdir/openmpi/lib/openmpi3" "$libdir/pmix2/lib" -name '*.so*' -type f -print0)
  local base_ld="${LD_LIBRARY_PATH:-}" added line soname
  local -A unresolved=()
  for _ in 1 2 3 4 5 6; do
    added=0
    unresolved=()
    for f in "${elves[@]}"; do
      while IFS= read -r line; do
        if [[ "$line" =~ ^[[:space:]]*([^[:space:]]+)\ =\>\ not\ found ]]; then
          soname="${BASH_REMATCH[1]}"
        elif [[ "$line" =~ :\ ([^:[:space:]]+):\ version\ .*\ not\ found ]]; then
          soname="$(basename "${BASH_REMATCH[1]}")"
        else
          continue
        fi
        if [[ -n "${provides[$soname]:-}" && ! -e "$shim/$soname" ]]; then
          ln -s "${provides[$soname]}" "$shim/$soname"
          added=1
        elif [[ -z "${provides[$soname]:-}" ]]; then
          unresolved[$soname]+=" ${f#"$prefix"/}"
        fi
      done < <(LD_LIBRARY_PATH="$libdir:$shim${base_ld:+:$base_ld}" ldd "$f" 2>&1)
    done
    ((added)) || break
  done
  # GPU_ENV_FALLBACK=all links every fallback library (to test them where all exist).
  if [[ "${GPU_ENV_FALLBACK:-}" == all ]]; then
    for soname in "${!provides[@]}"; do
      [[ "$soname" =~ \.so\.[0-9]+$ && ! -e "$shim/$soname" ]] && ln -s "${provides[$soname]}" "$shim/$soname"
    done
  fi
  # UCX finds its transport modules next to libucs.
  [[ -e "$shim/libucs.so.0" && -d "$prefix/fallback/usr/lib/$multiarch/ucx" ]] &&
    ln -sfn "$prefix/fallback/usr/lib/$multiarch/ucx" "$shim/ucx"
  # Fatal only for what every build or run needs; a plugin or an unused binding (the
  # Fortran ones need libgfortran) that cannot load is reported and left alone.
  local -a fatal=() optional=()
  for soname in "${!unresolved[@]}"; do
    if [[ "${unresolved[$soname]}" =~ /(libhdf5_serial|libmpi|libopen-pal|libopen-rte|libpmix|libhwloc|libevent[a-z_]*-2\.1)\.so|usr/bin/(orterun|orted)( |$) ]]; then
      fatal+=("$soname (needed by${unresolved[$soname]})")
    else
      optional+=("$soname (needed by${unresolved[$soname]})")
    fi
  done
  if ((${#fatal[@]})); then
    printf '  %s\n' "${fatal[@]}" >&2
    _gpu_env_fail "the libraries above are missing on this machine and not in the bundle"
    return
  fi
  if ((${#optional[@]})); then
    printf 'gpu_env.sh: note: not loadable here (optional parts): %s\n' "${optional[*]}" >&2
  fi

  # 3. The environment.
  _gpu_env_path_prepend() {  # <var> <dir>: put dir first in the :-list var, once
    local var="$1" dir="$2" rest=":${!1:-}:"
    rest="${rest//:$dir:/:}"; rest="${rest#:}"; rest="${rest%:}"
    printf -v "$var" '%s' "$dir${rest:+:$rest}"
  }
  _gpu_env_path_prepend LD_LIBRARY_PATH "$shim"
  _gpu_env_path_prepend LD_LIBRARY_PATH "$libdir"
  _gpu_env_path_prepend PATH "$prefix/usr/bin"
  unset -f _gpu_env_path_prepend
  export PATH LD_LIBRARY_PATH
  # Debian builds Open MPI with prefix /usr but libdir, pkglibdir and includedir under
  # /usr/lib/<multiarch>/openmpi and sysconfdir /etc/openmpi: OPAL_PREFIX alone misses those.
  export OPAL_PREFIX="$prefix/usr"
  export OPAL_EXEC_PREFIX="$prefix/usr"
  export OPAL_BINDIR="$prefix/usr/bin"
  export OPAL_LIBDIR="$libdir/openmpi/lib"
  export OPAL_PKGLIBDIR="$libdir/openmpi/lib/openmpi3"
  export OPAL_INCLUDEDIR="$libdir/openmpi/include"
  export OPAL_PKGINCLUDEDIR="$libdir/openmpi/include/openmpi"
  export OPAL_DATAROOTDIR="$prefix/usr/share"
  export OPAL_DATADIR="$prefix/usr/share"
  export OPAL_PKGDATADIR="$prefix/usr/share/openmpi"
  export OPAL_SYSCONFDIR="$prefix/etc/openmpi"
  export OPAL_LIBEXECDIR="$prefix/usr/libexec"
  # PMIx (inside mpirun and every rank) is installed under /usr/lib/<multiarch>/pmix2.
  export PMIX_PREFIX="$libdir/pmix2"
  export PMIX_EXEC_PREFIX="$libdir/pmix2"
  export PMIX_LIBDIR="$libdir/pmix2/lib"
  export PMIX_PKGLIBDIR="$libdir/pmix2/lib/pmix"
  export PMIX_DATAROOTDIR="$libdir/pmix2/share"
  export PMIX_DATADIR="$libdir/pmix2/share"
  export PMIX_PKGDATADIR="$libdir/pmix2/share/pmix"
  export PMIX_SYSCONFDIR="$libdir/pmix2/etc"
  # Open MPI's ssh/rsh launcher will not start, even for ranks on this node only, without
  # an agent it can find; a bare image has no ssh.
  if [[ -z "${OMPI_MCA_plm_rsh_agent+set}" ]] && ! command -v ssh >/dev/null 2>&1 &&
     ! command -v rsh >/dev/null 2>&1; then
    export OMPI_MCA_plm_rsh_agent=false
  fi
  # hwloc's plugins are not bundled; keep it from loading another hwloc's.
  export HWLOC_PLUGINS_PATH="$libdir/hwloc"
  export GPU_ENV_PREFIX="$prefix"

  # GPU_ENV_PREFIX_PATH: the bundle's own prefixes; CMAKE_PREFIX_PATH in the CMake args
  # puts the extra prefixes (torch's) and $CMAKE_PREFIX_PATH before them.
  export GPU_ENV_PREFIX_PATH="$prefix/usr"
  local -a prefixes=("${extra_prefixes[@]}") p
  if [[ -n "${CMAKE_PREFIX_PATH:-}" ]]; then
    IFS=: read -r -a p <<<"$CMAKE_PREFIX_PATH"
    prefixes+=("${p[@]}")
  fi
  prefixes+=("$GPU_ENV_PREFIX_PATH")
  local mpiinc="$libdir/openmpi/include" mpilib="$libdir/openmpi/lib/libmpi.so"
  GPU_ENV_CMAKE_ARGS=(
    "-DCMAKE_PREFIX_PATH=$(IFS=';'; echo "${prefixes[*]}")"
    # FindHDF5: HDF5_ROOT turns its search into NO_DEFAULT_PATH; include/ and lib/ below it
    # are Debian's links to /usr/include/hdf5/serial and to the directory itself.
    "-DHDF5_ROOT=$libdir/hdf5/serial"
    "-DHDF5_PREFER_PARALLEL=OFF"
    # FindMPI: given the library and the header directory it looks for no wrapper compiler
    # (lrfind asks for the C component only).
    "-DMPI_HOME=$prefix/usr"
    "-DMPIEXEC_EXECUTABLE=$prefix/usr/bin/mpiexec"
    "-DMPI_C_LIB_NAMES=mpi"
    "-DMPI_C_HEADER_DIR=$mpiinc"
    "-DMPI_C_INCLUDE_PATH=$mpiinc"
    "-DMPI_mpi_LIBRARY=$mpilib"
    "-DGTest_DIR=$libdir/cmake/GTest"
    # cmake/LrfindGTest.cmake builds GoogleTest from these when LibTorch's ABI differs.
    "-DGTEST_SOURCE_DIR=$prefix/usr/src/googletest"
    "-DCLI11_DIR=$prefix/usr/share/cmake/CLI11"
    "-Dnlohmann_json_DIR=$prefix/usr/share/cmake/nlohmann_json"
  )

  # 4. Smoke check: mpirun starts (finds its libraries and help files).
  local ompi_version
  ompi_version="$("$prefix/usr/bin/mpirun" --version 2>&1 | head -n 1)" ||
    { _gpu_env_fail "$prefix/usr/bin/mpirun does not start: $ompi_version"; return; }
  local used
  used="$(find "$shim" -mindepth 1 -maxdepth 1 -name 'lib*' -printf '%f\n' | sort | tr '\n' ' ')"
  echo "gpu_env: prefix $prefix ($npkg packages: $ncore core, $nfallback fallback; fallback libs in use: ${used:-none}); Open MPI ${ompi_version##* }; ${#GPU_ENV_CMAKE_ARGS[@]} CMake args in GPU_ENV_CMAKE_ARGS"
}

_gpu_env_main "$@"
_gpu_env_rc=$?
unset -f _gpu_env_main _gpu_env_fail _gpu_env_unpack _gpu_env_fix_links
eval "unset _gpu_env_rc; return $_gpu_env_rc"
