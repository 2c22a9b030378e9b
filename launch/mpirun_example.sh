#!/bin/bash
# Find a learning rate with lrfind under mpirun, then train with it: the pattern of the
# Slurm and PBS scripts, for a workstation or an interactive allocation.
#   NP=4 MODEL=model.pt DATA=train.h5 TRAIN="python train.py --lr" launch/mpirun_example.sh
# Without MODEL/DATA it runs the built-in synthetic task, and without TRAIN it only prints
# the lr. Root (containers) and more ranks than cores are allowed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LRFIND="${LRFIND:-$root/build/lrfind_dist}"
NP="${NP:-2}"
MODEL="${MODEL:-mlp}"
DATA="${DATA:-synthetic}"
LRFIND_ARGS="${LRFIND_ARGS:---num-training 100}"
TRAIN="${TRAIN:-}"
OUT="${OUT:-lrfind}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

# shellcheck disable=SC2086
LR="$(mpirun -np "$NP" "$LRFIND" --model "$MODEL" --data "$DATA" $LRFIND_ARGS \
        --out "$OUT.h5" --json "$OUT.json" --plot "$OUT.svg" --force --print-lr)"
if [[ -z "$LR" ]]; then
  echo "lrfind found no learning rate; see $OUT.json (no_suggestion_reason)" >&2
  exit 1
fi
echo "lrfind: suggested lr $LR"
if [[ -n "$TRAIN" ]]; then
  # shellcheck disable=SC2086
  mpirun -np "$NP" $TRAIN "$LR"
fi
