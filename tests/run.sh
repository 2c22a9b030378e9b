#!/usr/bin/env bash
# Fresh Debian 12 to a passing test suite: installs what is missing (including
# GoogleTest), builds everything, and runs all tests with ctest.
# Usage: tests/run.sh [extra ctest arguments]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LRFIND_BUILD_DIR:-$root/build}"
jobs="$(nproc)"

"$root/launch/install_deps.sh" --tests
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLRFIND_BUILD_TESTS=ON
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs" "$@"
