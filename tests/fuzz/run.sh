#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and runs each for
# the given number of seconds (default 600), starting from tests/fuzz/corpus/<target>.
# New inputs go to build-fuzz/corpus/<target>; crashes to build-fuzz/artifacts/.
#   tests/fuzz/run.sh [seconds] [target...]     targets: hdf5_input cli (default: both, in parallel)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${LRFIND_FUZZ_BUILD_DIR:-$root/build-fuzz}"
seconds="${1:-600}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(hdf5_input cli)

"$root/launch/install_deps.sh" --tests
if ! command -v clang++ >/dev/null; then
  echo "fuzz/run.sh: needs clang (apt-get install clang)" >&2
  exit 1
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DLRFIND_BUILD_FUZZERS=ON -DLRFIND_BUILD_TESTS=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS="detect_container_overflow=0:detect_odr_violation=0:detect_leaks=0"
export UBSAN_OPTIONS="suppressions=$root/tests/sanitizers/ubsan.supp:print_stacktrace=1:halt_on_error=1"
pids=()
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t" "$build/artifacts/$t"
  (cd "$build" && "$build/tests/fuzz/fuzz_$t" "$build/corpus/$t" "$root/tests/fuzz/corpus/$t" \
      -max_total_time="$seconds" -artifact_prefix="$build/artifacts/$t/" -print_final_stats=1 \
      >"$build/fuzz_$t.log" 2>&1) &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  t="${targets[$i]}"
  if wait "${pids[$i]}"; then result=ok; else result=FAILED; status=1; fi
  runs=$(grep -m1 "stat::number_of_executed_units" "$build/fuzz_$t.log" | awk '{print $2}')
  echo "fuzz_$t: $result, ${runs:-?} executions in ${seconds} s, corpus $(ls "$build/corpus/$t" | wc -l) inputs (log: $build/fuzz_$t.log)"
done
exit "$status"
