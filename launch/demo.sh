#!/usr/bin/env bash
# Fresh Debian 12 to a suggested learning rate: installs what is missing, builds
# lrfind_dist, and runs it on the built-in default task (synthetic data, MLP). Writes
# lrfind.h5 and lrfind.svg in the current directory (replacing earlier demo output).
# Extra arguments go to lrfind_dist, e.g. ./launch/demo.sh --optimizer adam
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LRFIND_BUILD_DIR:-$root/build}"

"$root/launch/install_deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLRFIND_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target lrfind_dist -j "$(nproc)"
"$build/lrfind_dist" --force "$@"
