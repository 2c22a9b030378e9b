#!/usr/bin/env bash
# Installs lrfind from <build-dir> into a scratch prefix, then configures, builds and runs
# the consumer project in this directory against it, as a user would:
#   cmake --install <build-dir> --prefix P; cmake -DCMAKE_PREFIX_PATH=P ...
# Usage: tests/consumer/run.sh <build-dir> [extra cmake arguments for the consumer]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="$(cd "$1" && pwd)"
shift
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/lrfind/lrfind.h"
test -x "$work/prefix/bin/lrfind_dist"
cmake -S "$here" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" "$@" >/dev/null
cmake --build "$work/build" -j "$(nproc)" >/dev/null
"$work/build/consumer"
