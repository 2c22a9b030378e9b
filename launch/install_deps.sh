#!/usr/bin/env bash
# Installs what lrfind needs to build and test on Debian 12, if it is missing.
# Uses apt-get as root, or through sudo. Safe to run again: it installs nothing when
# everything is there. Usage: launch/install_deps.sh [--tests]
set -euo pipefail

packages=(
  build-essential cmake
  libtorch-dev          # LibTorch (CPU) with its CMake config
  libopenblas0-pthread  # without it LibTorch uses the reference BLAS, about 10x slower
  libhdf5-dev
  libcli11-dev
  nlohmann-json3-dev
  libopenmpi-dev openmpi-bin  # the MPI backend; mpirun
)
if [[ "${1:-}" == "--tests" ]]; then
  packages+=(libgtest-dev)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "install_deps.sh: missing packages (${missing[*]}) and neither root nor sudo; install them and rerun" >&2
  exit 1
fi
echo "install_deps.sh: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}"
