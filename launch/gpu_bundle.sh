#!/usr/bin/env bash
# Downloads the Debian 12 packages that building and testing lrfind needs on a machine
# that has a compiler, CMake, CUDA and PyTorch but no HDF5, Open MPI, CLI11,
# nlohmann-json or GoogleTest, and cannot download anything (the lent GPU machine: an
# Ubuntu 24.04-like image with CUDA 13 and pip's torch/NCCL). Run it here, where
# apt-get works; the .debs land in .gpu-deps/ (git-ignored, so a device run must name it
# in `carry`), with a MANIFEST. There, `source launch/gpu_env.sh .gpu-deps <prefix>`
# unpacks them into a private prefix and points PATH, LD_LIBRARY_PATH, Open MPI and
# CMake at it.
#
#   launch/gpu_bundle.sh [dest-dir]      (default: <repo>/.gpu-deps)
#
# Needs apt-get with package lists (apt-get update, as root, once); no root otherwise.
# Safe to run again: a .deb already there with the same name and checksum is kept,
# stale ones are removed. Fails when the bundle exceeds 40 MiB.
#
# The package set was read from the dependency closure
#   apt-cache depends --recurse --no-recommends --no-suggests libhdf5-dev libopenmpi-dev
#     openmpi-bin libcli11-dev nlohmann-json3-dev libgtest-dev
# and cut down to what lrfind uses. The script checks it is still closed: every direct
# Depends of a bundled package must be bundled or listed in `excluded` with its reason,
# else it stops (a Debian point release may add one).
#
# core (gpu_env.sh unpacks them into <prefix>, first on LD_LIBRARY_PATH): what lrfind is
# compiled against and the libraries that belong to those ABIs.
#   libhdf5-dev, libhdf5-103-1      serial HDF5 1.10 headers (/usr/include/hdf5/serial),
#                                   libhdf5.so in /usr/lib/x86_64-linux-gnu/hdf5/serial
#   libopenmpi-dev, libopenmpi3     Open MPI 4.1 headers, libmpi, MCA plugins (openmpi3/)
#   openmpi-bin, openmpi-common     mpirun/orterun, orted, opal_wrapper; help files,
#                                   wrapper data, /etc/openmpi/openmpi-mca-params.conf
#   libpmix2, libhwloc15,           Open MPI's runtime (PMIx server in mpirun, topology,
#   libevent-core-2.1-7,            event loop)
#   libevent-pthreads-2.1-7
#   libcli11-dev, nlohmann-json3-dev  header-only, with CMake config files
#   libgtest-dev, googletest        libgtest.a/libgtest_main.a + GTest CMake config, and
#                                   the sources in /usr/src/googletest
# fallback (unpacked into <prefix>/fallback; gpu_env.sh exposes a library from there only
# when the target's loader cannot find that soname, so the target's own, newer copies win):
#   libsz2 libaec0                  HDF5's szip filter
#   libcurl4 + libnghttp2-14 librtmp1 libssh2-1 libpsl5 libldap-2.5-0 libsasl2-2
#     libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2
#     libbrotli1 libzstd1 libidn2-0 libunistring2 libgnutls30 libnettle8 libhogweed6
#     libgmp10 libp11-kit0 libtasn1-6 libffi8 libssl3 zlib1g
#                                   libhdf5_serial.so.103 links libcurl.so.4 (ROS3 driver)
#                                   and libssl/libcrypto; a bare CUDA image may lack curl
#   libmunge2 libnuma1 libudev1 libuuid1 libatomic1
#                                   needed by libpmix, libpsm2, libhwloc, libpsm, libfabric
#   libfabric1 libucx0 libibverbs1 ibverbs-providers librdmacm1 libpsm2-2
#     libpsm-infinipath1 libnl-3-200 libnl-route-3-200
#                                   needed by Open MPI's network plugins (mtl psm/psm2,
#                                   reachable netlink, ofi, ucx, openib); Debian's
#                                   openmpi-mca-params.conf disables ofi/ucx/openib, but the
#                                   psm/psm2/netlink plugins are opened on every MPI_Init
# Left out (see `excluded`): glibc, libstdc++, libgcc (the target's own, newer); the HDF5
# C++/Fortran/HL libraries and the -dev packages only static linking needs; h5cc
# (hdf5-helpers: not relocatable, FindHDF5 uses HDF5_ROOT instead); Fortran; ssh (mpirun
# needs it only across nodes); libhwloc-plugins (optional PCI/GPU discovery); SASL's
# plugins; LibTorch, CMake, ninja and compilers (the GPU machine has them).
# Assumed present on the target: glibc >= 2.36, libstdc++/libgcc_s, a C and C++
# compiler, CMake >= 3.18, dpkg-deb, ldd.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/.gpu-deps}"
limit_bytes=$((40 * 1024 * 1024))
arch=amd64

core=(
  libhdf5-dev libhdf5-103-1
  libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common
  libpmix2 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7
  libcli11-dev nlohmann-json3-dev libgtest-dev googletest
)
fallback=(
  libsz2 libaec0
  libcurl4 libnghttp2-14 librtmp1 libssh2-1 libpsl5 libldap-2.5-0 libsasl2-2
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2
  libbrotli1 libzstd1 libidn2-0 libunistring2 libgnutls30 libnettle8 libhogweed6
  libgmp10 libp11-kit0 libtasn1-6 libffi8 libssl3 zlib1g
  libmunge2 libnuma1 libudev1 libuuid1 libatomic1
  libfabric1 libucx0 libibverbs1 ibverbs-providers librdmacm1 libpsm2-2
  libpsm-infinipath1 libnl-3-200 libnl-route-3-200
)
declare -A excluded=(
  [libc6]="glibc: the target's own"
  [libgcc-s1]="compiler runtime: the target's own"
  [libstdc++6]="compiler runtime: the target's own"
  [gcc-12-base]="compiler runtime: the target's own"
  [libhdf5-cpp-103-1]="HDF5 C++ binding: lrfind uses the C API"
  [libhdf5-hl-100]="HDF5 high-level library: lrfind uses the C API"
  [libhdf5-hl-cpp-100]="HDF5 high-level C++ binding: unused"
  [libhdf5-fortran-102]="HDF5 Fortran binding: unused"
  [libhdf5-hl-fortran-100]="HDF5 Fortran binding: unused"
  [hdf5-helpers]="h5cc: hard-codes /usr; FindHDF5 is pointed at HDF5_ROOT instead"
  [zlib1g-dev]="static linking only"
  [libjpeg-dev]="static linking only"
  [libaec-dev]="static linking only"
  [libcurl4-openssl-dev]="static linking only"
  [libcurl-dev]="static linking only"
  [libssl-dev]="static linking only"
  [libevent-dev]="static linking only"
  [libhwloc-dev]="static linking only"
  [libpmix-dev]="static linking only"
  [libibverbs-dev]="static linking only"
  [gfortran-12]="Fortran bindings: unused"
  [gfortran-mod-15]="Fortran bindings: unused"
  [libjs-jquery]="documentation"
  [libjs-jquery-ui]="documentation"
  [openssh-client]="mpirun needs ssh only to start daemons on other nodes"
  [ssh-client]="mpirun needs ssh only to start daemons on other nodes"
  [libhwloc-plugins]="optional hwloc discovery plugins (PCI, GPUs); mpirun runs without"
  [adduser]="maintainer scripts only; packages are unpacked, not installed"
  [libsasl2-modules-db]="SASL plugin, loaded from an absolute path only by LDAP auth"
)

die() { echo "gpu_bundle.sh: $*" >&2; exit 1; }
for tool in apt-get apt-cache dpkg-deb sha256sum; do
  command -v "$tool" >/dev/null || die "needs $tool (a Debian 12 machine with apt)"
done

all=("${core[@]}" "${fallback[@]}")
declare -A role=()
for p in "${core[@]}"; do role[$p]=core; done
for p in "${fallback[@]}"; do role[$p]=fallback; done

# 1. Is the set closed? Each Depends group (alternatives joined by |, virtual packages
#    expanded to their providers) needs one member bundled or excluded.
if ! deps="$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
               --no-replaces --no-enhances "${all[@]/%/:$arch}" 2>&1)"; then
  die "apt-cache depends failed (no package lists? run 'apt-get update' as root): $(tail -n 3 <<<"$deps")"
fi
open=()
while IFS=$'\t' read -r owner members; do
  ok=0
  for m in $members; do
    m="${m%:*}"
    if [[ -n "${role[$m]:-}" || -n "${excluded[$m]:-}" ]]; then ok=1; break; fi
  done
  ((ok)) || open+=("$owner needs one of: $members")
done < <(awk '
  function flush() { if (group != "") print owner "\t" group; group = "" }
  /^[^ ]/ { flush(); owner = $1; sub(/:.*/, "", owner); cont = 0; next }
  /^ [ |](Pre)?Depends: / {
    alt = (substr($0, 2, 1) == "|")
    name = $2; gsub(/[<>]/, "", name)
    if (!cont) flush()
    group = group (group == "" ? "" : " ") name
    cont = alt; next
  }
  /^    [^ ]/ { group = group " " $1; next }
  /^  / { flush(); cont = 0 }
  END { flush() }' <<<"$deps")
if ((${#open[@]})); then
  printf '  %s\n' "${open[@]}" >&2
  die "the package set is not closed: bundle or exclude (with a reason) the packages above"
fi

# 2. Download what is missing or changed (checked against the archive's SHA256).
mkdir -p "$dest"
uris="$(apt-get download --print-uris "${all[@]/%/:$arch}" 2>&1)" ||
  die "apt-get download --print-uris failed (stale package lists? run 'apt-get update'): $(tail -n 3 <<<"$uris")"
declare -A want=()   # file name -> sha256
fetch=()
while read -r _uri file size sum; do
  [[ "$sum" == SHA256:* ]] || die "no SHA256 for $file in apt's answer"
  want[$file]="${sum#SHA256:}"
  if [[ -f "$dest/$file" ]] && [[ "$(stat -c %s "$dest/$file")" == "$size" ]] &&
     sha256sum "$dest/$file" | grep -q "^${sum#SHA256:} "; then
    continue
  fi
  fetch+=("$file")
done < <(grep "^'" <<<"$uris")
((${#want[@]} == ${#all[@]})) || die "apt resolved ${#want[@]} files for ${#all[@]} packages"

if ((${#fetch[@]})); then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # apt drops privileges to _apt for downloads, which cannot write a root-only temp dir.
  sandbox=()
  if [[ "$(id -u)" -eq 0 ]]; then sandbox=(-o APT::Sandbox::User=root); fi
  names=()
  for f in "${fetch[@]}"; do
    p="${f%%_*}"; v="${f#*_}"; v="${v%_*}"
    names+=("$p:$arch=${v//%3a/:}")
  done
  echo "gpu_bundle.sh: downloading ${#names[@]} packages" >&2
  (cd "$tmp" && apt-get download -q "${sandbox[@]}" "${names[@]}") >&2 ||
    die "apt-get download failed"
  for f in "${fetch[@]}"; do
    sha256sum "$tmp/$f" | grep -q "^${want[$f]} " || die "checksum mismatch for $f"
    mv -f "$tmp/$f" "$dest/$f"
  done
fi
for f in "$dest"/*.deb; do
  [[ -e "$f" ]] || continue
  if [[ -z "${want[$(basename "$f")]:-}" ]]; then
    echo "gpu_bundle.sh: removing stale $(basename "$f")" >&2
    rm -f "$f"
  fi
done

# 3. MANIFEST (gpu_env.sh reads role and file from it) and the size check.
total=0
{
  echo "# lrfind GPU bundle: Debian 12 packages for launch/gpu_env.sh (made by launch/gpu_bundle.sh)"
  echo "# package	version	size	role	file"
  for file in $(printf '%s\n' "${!want[@]}" | sort); do
    p="$(dpkg-deb -f "$dest/$file" Package)"
    [[ -n "${role[$p]:-}" ]] || die "$file holds package $p, which is not in the list"
    size="$(stat -c %s "$dest/$file")"
    total=$((total + size))
    printf '%s\t%s\t%s\t%s\t%s\n' "$p" "$(dpkg-deb -f "$dest/$file" Version)" "$size" "${role[$p]}" "$file"
  done
} >"$dest/MANIFEST.tmp"
mv -f "$dest/MANIFEST.tmp" "$dest/MANIFEST"
mib="$(awk -v t="$total" 'BEGIN { printf "%.1f", t / 1048576 }')"
echo "gpu_bundle.sh: ${#all[@]} packages (${#core[@]} core, ${#fallback[@]} fallback), $mib MiB in $dest"
((total <= limit_bytes)) || die "the bundle is $mib MiB, over the 40 MiB limit"
