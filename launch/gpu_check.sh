#!/usr/bin/env bash
# GPU check: one call that builds lrfind against this machine's PyTorch (CUDA) and NCCL
# and verifies the GPU path, for a lent GPU machine with minutes to spare:
#
#   launch/gpu_check.sh [--require-gpu] [--build DIR] [--prebuilt DIR] [--steps N]
#
#   --require-gpu   no GPU is a failure: exit 1 with "no GPU: nothing verified" (else
#                   the CPU parts run and the script exits 0 with that line)
#   --build DIR     build directory (default: build-gpu)
#   --prebuilt DIR  use the binaries already built in DIR: no configure, no build, and
#                   the environment as it is (no .gpu-deps set-up)
#   --steps N       length of the CPU/CUDA sweep comparison (default 100)
#
# Parts, each with a PASS or FAIL line in the report ($OUT/gpu_report.txt when OUT is
# set, and printed at the end):
#   build      ninja (else make), every core, against torch's LibTorch and pip's NCCL;
#              with .gpu-deps/ (launch/gpu_bundle.sh) unpacked into a private prefix
#              for HDF5, Open MPI, CLI11, nlohmann-json and GoogleTest (the folder is
#              ignored by git: a device run names it in `carry`)
#   gpu_test, nccl_test_np1, nccl_test_np2 (one rank per GPU; needs 2 GPUs)
#   shared_gpu_np2  two ranks on one GPU with --allow-gpu-sharing (host staging)
#   nccl_bandwidth  allreduce of 100 MB, one rank per GPU (at most 8)
#   cnn_sweep       the same CNN sweep on CPU and CUDA: ms/step each, loss_raw agreement
#   wide_mlp        tests/bench/finder_overhead on the GPU: MLP 32-1024-1024-10, batch
#                   256 (bare LibTorch loop ms/step, and the sweep's cost over it)
# With one GPU, an INFO line says whether NCCL itself accepts two ranks on one GPU.
#
# The verdict never says PASS for a part that did not run: where LibTorch sees a GPU,
# a skipped test is a FAIL. "LibTorch sees a GPU" is decided by LibTorch (PyTorch's
# torch.cuda.device_count(), and the built lrfind_dist's count), not by a CUDA runtime
# of our own.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-gpu"
prebuilt=""
require_gpu=0
steps=100
while (($#)); do
  case "$1" in
    --require-gpu) require_gpu=1 ;;
    --build) build="$2"; shift ;;
    --prebuilt) prebuilt="$2"; build="$2"; shift ;;
    --steps) steps="$2"; shift ;;
    -h|--help) sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$build"
report="$(mktemp)"
say() { echo "$*" | tee -a "$report"; }
finish() {
  echo
  echo "===== gpu_check report ====="
  cat "$report"
  if [[ -n "${OUT:-}" ]]; then cp "$report" "$OUT/gpu_report.txt"; fi
  rm -f "$report"
  exit "$1"
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export GTEST_COLOR=no  # the logs are parsed
status=0
fail() { say "FAIL: $*"; status=1; }

# What PyTorch says, in one call: its CMake prefix, version, CUDA, GPU count, pip's NCCL.
python=${PYTHON:-python3}
declare -A torch=()
if info="$("$python" - 2>/dev/null <<'PY'
import os, torch
print("prefix=" + torch.utils.cmake_prefix_path)
print("version=" + torch.__version__)
print("cuda=" + str(torch.version.cuda))
print("gpus=" + str(torch.cuda.device_count()))
try:
    import nvidia.nccl as n
    print("nccl=" + (os.path.dirname(n.__file__) if n.__file__ else list(n.__path__)[0]))
except Exception:
    print("nccl=")
PY
)"; then
  while IFS='=' read -r key value; do torch[$key]="$value"; done <<<"$info"
  say "torch: ${torch[version]} CUDA ${torch[cuda]}, GPUs PyTorch sees: ${torch[gpus]}"
else
  say "torch: $python cannot import torch; LibTorch from CMake's search (CMAKE_PREFIX_PATH)"
fi
gpus="${torch[gpus]:-}"
if [[ -z "$gpus" ]]; then
  # No PyTorch to ask yet: without a driver no LibTorch can see a GPU either.
  if compgen -G "/dev/nvidia[0-9]*" >/dev/null; then gpus=unknown; else gpus=0; fi
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | sed 's/^/gpu: /' | tee -a "$report"
if [[ "$gpus" == 0 && $require_gpu -eq 1 ]]; then
  say "no GPU: nothing verified (--require-gpu)"
  finish 1
fi

if [[ -z "$prebuilt" ]]; then
  cmake_args=(-DCMAKE_BUILD_TYPE=Release -DLRFIND_BUILD_TESTS=ON -DLRFIND_WITH_CUDA=ON -DLRFIND_WITH_NCCL=ON)
  [[ -n "${torch[prefix]:-}" ]] && cmake_args+=("-DCMAKE_PREFIX_PATH=${torch[prefix]}")
  # NCCL: an explicit NCCL_HOME wins; else the one that ships with PyTorch's wheels.
  if [[ -z "${NCCL_HOME:-}" && -n "${torch[nccl]:-}" && -f "${torch[nccl]}/include/nccl.h" ]]; then
    export NCCL_HOME="${torch[nccl]}"
  fi
  say "NCCL_HOME: ${NCCL_HOME:-(system search)}"
  if [[ -d "$root/.gpu-deps" ]]; then
    # The bundle's prefix after torch's in CMAKE_PREFIX_PATH (the last -D wins).
    # shellcheck source=launch/gpu_env.sh
    if ! source "$root/launch/gpu_env.sh" "$root/.gpu-deps" "$build/deps" ${torch[prefix]:+"${torch[prefix]}"}; then
      fail "build dependencies from .gpu-deps (launch/gpu_env.sh)"
      finish 1
    fi
    cmake_args+=("${GPU_ENV_CMAKE_ARGS[@]}")
    say "dependencies: the .gpu-deps bundle, unpacked in $build/deps"
  else
    say "dependencies: the system's (no .gpu-deps here: launch/gpu_bundle.sh makes it; a device run carries it)"
  fi
  command -v ninja >/dev/null && cmake_args+=(-G Ninja)
  log="$build/gpu_check_build.log"
  start=$SECONDS
  if ! cmake -S "$root" -B "$build" "${cmake_args[@]}" >"$log" 2>&1; then
    tail -n 25 "$log"
    fail "configure (see $log)"
    finish 1
  fi
  grep "lrfind: CUDA toolkit" "$log" | sed 's/^-- //' | tee -a "$report"
  if ! cmake --build "$build" -j "$(nproc)" --target lrfind_dist gpu_test nccl_test nccl_bandwidth \
       finder_overhead >>"$log" 2>&1; then
    grep -E "error|Error" "$log" | head -n 25
    fail "build (see $log)"
    finish 1
  fi
  say "PASS: build ($((SECONDS - start)) s)"
fi
dist="$build/lrfind_dist"
"$dist" --version | tee -a "$report"
# LibTorch inside lrfind has the last word on what it sees.
libtorch_gpus="$("$dist" --version | sed -n 's/.*GPUs LibTorch sees now: \([0-9]*\).*/\1/p')"
if [[ "$gpus" == unknown || "${libtorch_gpus:-0}" -gt "${gpus:-0}" ]]; then gpus="${libtorch_gpus:-0}"; fi

# The line after GoogleTest's first "...: Skipped" (its reason), or a bench's skip line.
first_skip_reason() { grep -m1 -A1 -E ': Skipped$|: skipped' "$1" | tail -n1 | tr -s ' '; }

# run_part <name> <command...>: PASS when it exits 0 and, where LibTorch sees a GPU,
# nothing in it skipped (a GoogleTest case, or a benchmark's "skipped" line).
run_part() {
  local name="$1"; shift
  local out="$build/gpu_check_${name}.log"
  timeout 300 "$@" >"$out" 2>&1
  local rc=$?
  local skipped
  skipped="$(sed -E 's/\x1b\[[0-9;]*m//g' "$out" | grep -oE '^\[  SKIPPED \] [A-Za-z_][A-Za-z0-9_./]*|^[a-z_]+: skipped' |
             sort -u | wc -l)"
  if ((rc != 0)); then
    fail "$name (exit $rc), last lines:"
    grep -v '^frame #' "$out" | tail -n 12 | tee -a "$report"
  elif ((skipped > 0 && gpus > 0)); then
    fail "$name: $skipped test(s) skipped although LibTorch sees $gpus GPU(s); the first reason:"
    first_skip_reason "$out" | tee -a "$report"
  elif ((skipped > 0)); then
    say "SKIP: $name (no GPU): $(first_skip_reason "$out")"
  else
    say "PASS: $name"
  fi
}
run_part gpu_test "$build/tests/gpu_test"
run_part nccl_test_np1 mpirun -np 1 "$build/tests/nccl_test"
if ((gpus >= 2)); then
  run_part nccl_test_np2 mpirun -np 2 "$build/tests/nccl_test"
elif ((gpus == 1)); then
  # NCCL puts one rank per GPU; ask it anyway, for the record.
  if LRFIND_NCCL_TEST_SHARE_GPU=1 timeout 120 mpirun -np 2 "$build/tests/nccl_test" \
       --gtest_filter='NcclTest.AllreduceSum*' >"$build/gpu_check_nccl_shared.log" 2>&1 &&
     grep -q '^\[       OK \] NcclTest.AllreduceSum' "$build/gpu_check_nccl_shared.log"; then
    say "INFO: NCCL accepts two ranks on one GPU (nccl_test allreduce at np 2 passed)"
  else
    say "INFO: NCCL refuses two ranks on one GPU: $(grep -m1 -iE 'duplicate|invalid|error' \
      "$build/gpu_check_nccl_shared.log" | tr -s ' ' | cut -c1-200)"
  fi
fi
ranks=$((gpus >= 1 ? (gpus > 8 ? 8 : gpus) : 1))
run_part nccl_bandwidth mpirun -np "$ranks" "$build/tests/bench/nccl_bandwidth" --mb 100
grep -h "^nccl_bandwidth:" "$build/gpu_check_nccl_bandwidth.log" | tee -a "$report"

# sweep <name> <device> [ranks] [flags...]: the CNN sweep, summaries in JSON.
sweep() {
  local name="$1" device="$2" np="$3"; shift 3
  local launcher=()
  ((np > 1)) && launcher=(mpirun -np "$np")
  timeout 300 "${launcher[@]}" "$dist" --model cnn --data synthetic-images --batch-size 256 --num-training "$steps" \
    --early-stop-threshold none --device "$device" --out "$build/gpu_check_$name.h5" \
    --json "$build/gpu_check_$name.json" --plot "" --force "$@" >"$build/gpu_check_sweep_$name.log" 2>&1
}
# The first error line of a failed sweep, else its last line.
why() { grep -m1 "error" "$1" || tail -n 1 "$1"; }
sweep cpu cpu 1 || fail "cnn_sweep on cpu: $(why "$build/gpu_check_sweep_cpu.log")"
if ((gpus > 0)); then
  if sweep cuda cuda 1; then
    "$python" - "$build/gpu_check_cpu.json" "$build/gpu_check_cuda.json" <<'PY' | tee -a "$report"
import json, sys
cpu, gpu = (json.load(open(p)) for p in sys.argv[1:3])
tc, tg = cpu["timing"]["seconds_per_step_median"], gpu["timing"]["seconds_per_step_median"]
n = len(cpu["curve"]["loss_raw"])
print(f"cnn_sweep: {n} steps, batch 256: cpu {tc*1e3:.2f} ms/step, cuda {tg*1e3:.2f} ms/step, speed-up {tc/tg:.1f}x")
print(f"cnn_sweep: suggested lr cpu {cpu['suggested_lr']}, cuda {gpu['suggested_lr']}; device {gpu['config']['device']}")
pairs = [(a, b) for a, b in zip(cpu["curve"]["loss_raw"], gpu["curve"]["loss_raw"]) if a > 0.23]
rel = max(abs(a - b) / abs(a) for a, b in pairs[:50])
print(f"cnn_sweep: loss_raw cpu vs cuda over the first {min(len(pairs), 50)} steps above 0.23: "
      f"max relative difference {rel:.2e}")
PY
    say "PASS: cnn_sweep (cuda)"
  else
    fail "cnn_sweep on cuda: $(why "$build/gpu_check_sweep_cuda.log")"
  fi
  if sweep shared cuda 2 --allow-gpu-sharing --num-training 20; then
    say "PASS: shared_gpu_np2 ($(grep -m1 -o 'gradients [^)]*' "$build/gpu_check_sweep_shared.log"))"
  else
    fail "shared_gpu_np2: $(why "$build/gpu_check_sweep_shared.log")"
  fi
  run_part wide_mlp "$build/tests/bench/finder_overhead" --device cuda --batch 256 --hidden 1024 --steps 100 --reps 5
  sed -n '1,4p' "$build/gpu_check_wide_mlp.log" | tee -a "$report"
fi

if ((gpus == 0)); then
  say "no GPU: nothing verified (the CPU parts ran; --require-gpu makes this a failure)"
  finish "$((status != 0 ? 1 : 0))"
fi
say "overall: $([[ $status -eq 0 ]] && echo PASS || echo FAIL)"
finish "$status"
