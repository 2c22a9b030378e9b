#!/usr/bin/env bash
# launch/gpu_check.sh's verdicts, on a machine without a GPU, against the binaries of
# this build (--prebuilt): usage gpu_check_test.sh <build-dir>
#   1. --require-gpu without a GPU: exit 1, "no GPU: nothing verified", nothing run.
#   2. Without --require-gpu: the CPU parts run, the same line, exit 0.
#   3. PyTorch (a stand-in python) says it sees a GPU, but the tests skip (here: because
#      the LibTorch they run on sees none): every skip is a FAIL, overall FAIL, exit 1.
#      The old script said "PASS (some tests SKIPPED)" and "overall: PASS".
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$1"
if compgen -G "/dev/nvidia[0-9]*" >/dev/null; then
  echo "SKIP: this machine has a GPU device node; the test needs one without"
  exit 77
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
check() {  # check <what> <command...>: the command must succeed
  local what="$1"; shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; failed=1; fi
}

# A python that cannot import torch, and one that says PyTorch sees one GPU.
printf '#!/bin/sh\nexit 1\n' >"$work/no_torch"
printf '#!/bin/sh\nprintf "prefix=/nonexistent\\nversion=2.11.0+cu130\\ncuda=13.0\\ngpus=1\\nnccl=\\n"\n' >"$work/one_gpu"
chmod +x "$work/no_torch" "$work/one_gpu"

PYTHON="$work/no_torch" "$root/launch/gpu_check.sh" --require-gpu --prebuilt "$build" >"$work/1.txt" 2>&1
rc=$?
check "1: --require-gpu exits 1 (got $rc)" test "$rc" -eq 1
check "1: says no GPU: nothing verified" grep -q "^no GPU: nothing verified" "$work/1.txt"
check "1: runs nothing" bash -c "! grep -qE '^(PASS|FAIL):' '$work/1.txt'"

OUT="$work" PYTHON="$work/no_torch" "$root/launch/gpu_check.sh" --prebuilt "$build" --steps 3 >"$work/2.txt" 2>&1
rc=$?
check "2: exits 0 without --require-gpu (got $rc)" test "$rc" -eq 0
check "2: says no GPU: nothing verified" grep -q "^no GPU: nothing verified" "$work/2.txt"
check "2: never an overall PASS" bash -c "! grep -q 'overall: PASS' '$work/2.txt'"
check "2: the report is in OUT" grep -q "no GPU: nothing verified" "$work/gpu_report.txt"

PYTHON="$work/one_gpu" "$root/launch/gpu_check.sh" --prebuilt "$build" --steps 3 >"$work/3.txt" 2>&1
rc=$?
check "3: exits 1 (got $rc)" test "$rc" -eq 1
check "3: gpu_test's skips are a FAIL" grep -q "^FAIL: gpu_test: 4 test(s) skipped although LibTorch sees 1 GPU(s)" \
  "$work/3.txt"
check "3: nccl_bandwidth's skip is a FAIL" grep -q "^FAIL: nccl_bandwidth: 1 test(s) skipped" "$work/3.txt"
check "3: overall FAIL" grep -q "^overall: FAIL" "$work/3.txt"
check "3: nccl_test_np1's skips are a FAIL" grep -q "^FAIL: nccl_test_np1: .* skipped although" "$work/3.txt"
check "3: no PASS line for a part that did not run" bash -c "! grep -qE '^PASS: ' '$work/3.txt'"
check "3: no claim that NCCL shares a GPU from skipped tests" bash -c "! grep -q 'NCCL accepts' '$work/3.txt'"
if ((failed)); then
  for f in 1 2 3; do echo "----- run $f"; cat "$work/$f.txt"; done
fi
exit "$failed"
