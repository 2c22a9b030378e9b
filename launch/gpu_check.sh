#!/usr/bin/env bash
# GPU check: builds lrfind against this machine's PyTorch (CUDA), runs the GPU tests,
# the NCCL allreduce bandwidth benchmark and a 100-step CNN sweep on CPU and on CUDA,
# and prints a short report (also written to $OUT/gpu_report.txt when OUT is set).
#
#   launch/gpu_check.sh [build-dir]      (default: build-gpu)
#
# Needs: python3 with torch (CUDA build), the CUDA toolkit, NCCL (system, NCCL_HOME, or
# pip's nvidia-nccl package), and the Debian build dependencies of launch/install_deps.sh
# --tests. Without a GPU every step still runs and the GPU tests report SKIPPED.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build-gpu}"
report="$(mktemp)"
say() { echo "$*" | tee -a "$report"; }
finish() {
  echo
  echo "===== gpu_check report ====="
  cat "$report"
  if [[ -n "${OUT:-}" ]]; then cp "$report" "$OUT/gpu_report.txt"; fi
  exit "$1"
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

python=${PYTHON:-python3}
if ! torch_prefix="$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)"; then
  say "FAIL: $python cannot import torch; set PYTHON to an interpreter with a CUDA build of PyTorch"
  finish 1
fi
say "torch: $("$python" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "GPUs", torch.cuda.device_count())')"
gpus="$("$python" -c 'import torch; print(torch.cuda.device_count())')"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi -L | sed 's/^/gpu: /' | tee -a "$report"
fi

# NCCL: an explicit NCCL_HOME wins; else the one that ships with PyTorch's wheels.
if [[ -z "${NCCL_HOME:-}" ]]; then
  pip_nccl="$("$python" -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)"
  if [[ -n "$pip_nccl" && -f "$pip_nccl/include/nccl.h" ]]; then export NCCL_HOME="$pip_nccl"; fi
fi
say "NCCL_HOME: ${NCCL_HOME:-(system search)}"

log="$build/gpu_check_build.log"
mkdir -p "$build"
if ! cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
     -DLRFIND_WITH_CUDA=ON -DLRFIND_WITH_NCCL=ON >"$log" 2>&1; then
  tail -n 25 "$log"
  say "FAIL: configure (see $log)"
  finish 1
fi
grep "lrfind: CUDA toolkit" "$log" | sed 's/^-- //' | tee -a "$report"
if ! cmake --build "$build" -j "$(nproc)" --target lrfind_dist gpu_test nccl_test nccl_bandwidth >>"$log" 2>&1; then
  grep -E "error|Error" "$log" | head -n 25
  say "FAIL: build (see $log)"
  finish 1
fi
"$build/lrfind_dist" --version | tee -a "$report"

status=0
run_step() {  # run_step <name> <command...>: runs it, records PASS/FAIL and the tail
  local name="$1"; shift
  local out="$build/gpu_check_${name}.log"
  if timeout 300 "$@" >"$out" 2>&1; then
    say "PASS: $name$(grep -q SKIPPED "$out" && echo " (some tests SKIPPED: $(grep -m1 -A1 'Skipped' "$out" | tail -n1 | tr -s ' '))")"
  else
    say "FAIL: $name (exit $?), last lines:"
    tail -n 15 "$out" | tee -a "$report"
    status=1
  fi
}
run_step gpu_test "$build/tests/gpu_test"
run_step nccl_test_np1 mpirun -np 1 "$build/tests/nccl_test"
if ((gpus >= 2)); then run_step nccl_test_np2 mpirun -np 2 "$build/tests/nccl_test"; fi
ranks=$((gpus >= 1 ? (gpus > 8 ? 8 : gpus) : 1))
if timeout 300 mpirun -np "$ranks" "$build/tests/bench/nccl_bandwidth" --mb 100 >"$build/gpu_check_bw.log" 2>&1; then
  grep nccl_bandwidth "$build/gpu_check_bw.log" | tee -a "$report"
else
  say "FAIL: nccl_bandwidth"; tail -n 10 "$build/gpu_check_bw.log" | tee -a "$report"; status=1
fi

# The same 100-step CNN sweep on both devices; seconds per step from the JSON summaries.
sweep() {  # sweep <device>
  timeout 300 "$build/lrfind_dist" --model cnn --data synthetic-images --batch-size 256 --num-training 100 \
    --early-stop-threshold none --device "$1" --out "$build/gpu_check_$1.h5" --json "$build/gpu_check_$1.json" \
    --plot "" --force >"$build/gpu_check_sweep_$1.log" 2>&1
}
devices=(cpu cuda)
if ((gpus == 0)); then
  devices=(cpu)
  say "SKIP: CUDA sweep and comparison (no GPU visible to PyTorch)"
fi
for dev in "${devices[@]}"; do
  if ! sweep "$dev"; then
    say "FAIL: 100-step CNN sweep on $dev"; tail -n 10 "$build/gpu_check_sweep_$dev.log" | tee -a "$report"; status=1
  fi
done
if [[ -f "$build/gpu_check_cpu.json" && -f "$build/gpu_check_cuda.json" ]]; then
  "$python" - "$build/gpu_check_cpu.json" "$build/gpu_check_cuda.json" <<'PY' | tee -a "$report"
import json, sys
cpu, gpu = (json.load(open(p)) for p in sys.argv[1:3])
tc, tg = cpu["timing"]["seconds_per_step_median"], gpu["timing"]["seconds_per_step_median"]
print(f"CNN sweep, 100 steps, batch 256: cpu {tc*1e3:.2f} ms/step, cuda {tg*1e3:.2f} ms/step, speed-up {tc/tg:.1f}x")
print(f"suggested lr: cpu {cpu['suggested_lr']}, cuda {gpu['suggested_lr']}; device {gpu['config']['device']}")
rel = max(abs(a - b) / abs(a) for a, b in zip(cpu["curve"]["loss_raw"][:50], gpu["curve"]["loss_raw"][:50]))
print(f"loss_raw cpu vs cuda, first 50 steps: max relative difference {rel:.2e}")
PY
fi
say "overall: $([[ $status -eq 0 ]] && echo PASS || echo FAIL)$( ((gpus == 0)) && echo " (no GPU: the GPU steps skipped)")"
finish "$status"
