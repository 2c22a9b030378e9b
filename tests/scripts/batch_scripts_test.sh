#!/usr/bin/env bash
# The scripts users run: all are valid shell (bash -n); the Slurm script works with
# srun replaced by a stand-in that runs its command on 2 MPI ranks (no Slurm here); the
# PBS script works with a two-slot node file; the mpirun example works as it is. Each
# must capture the suggestion with --print-lr and hand it to the training command.
# Usage: tests/scripts/batch_scripts_test.sh <lrfind_dist> <mpirun>
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
lrfind="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
mpiexec="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

for script in "$root"/launch/*.sh "$root/launch/slurm/lrfind.sbatch" "$root/launch/pbs/lrfind.pbs" \
              "$root"/tests/*.sh "$root"/tests/*/*.sh; do
  bash -n "$script" || { echo "FAIL: $script is not valid shell"; exit 1; }
done

mkdir -p "$work/bin"
cat >"$work/bin/srun" <<STUB
#!/bin/bash
# srun stand-in: drops srun's own options, runs the command on 2 MPI ranks.
while [[ \$# -gt 0 && "\$1" == -* ]]; do shift; done
exec "$mpiexec" -np 2 "\$@"
STUB
ln -s "$(command -v "$mpiexec")" "$work/bin/mpirun" 2>/dev/null || true
chmod +x "$work/bin/srun"
printf 'localhost\nlocalhost\n' >"$work/nodefile"

# check <name> <log>: the job printed the suggestion and trained twice (2 ranks) with it.
check() {
  local lr
  lr="$(sed -n 's/^lrfind: suggested lr \([0-9.e+-]*\).*/\1/p' "$2" | head -n 1)"
  if [[ -z "$lr" ]]; then
    echo "FAIL: $1 printed no suggestion"; cat "$2"; exit 1
  fi
  if [[ "$(grep -c "^trained with lr $lr\$" "$2")" != 2 ]]; then
    echo "FAIL: $1 did not train with lr $lr on both ranks"; cat "$2"; exit 1
  fi
  echo "ok: $1 found lr $lr and trained with it"
}

cd "$work"
common=(LRFIND="$lrfind" MODEL=mlp DATA=synthetic LRFIND_ARGS="--num-training 40 --threads 1"
        TRAIN="echo trained with lr")
env PATH="$work/bin:$PATH" "${common[@]}" SLURM_JOB_ID=42 bash "$root/launch/slurm/lrfind.sbatch" >slurm.log 2>slurm.err ||
  { echo "FAIL: the Slurm script"; cat slurm.log slurm.err; exit 1; }
check slurm slurm.log
test -f lrfind-42.h5 && test -f lrfind-42.json && test -f lrfind-42.svg
grep -q "loss (smoothed) vs lr" slurm.err || { echo "FAIL: no text plot in the job log"; cat slurm.err; exit 1; }

env PATH="$work/bin:$PATH" "${common[@]}" PBS_NODEFILE="$work/nodefile" PBS_O_WORKDIR="$work" PBS_JOBID=7 \
  bash "$root/launch/pbs/lrfind.pbs" >pbs.log 2>pbs.err || { echo "FAIL: the PBS script"; cat pbs.log pbs.err; exit 1; }
check pbs pbs.log
test -f lrfind-7.h5

env PATH="$work/bin:$PATH" "${common[@]}" NP=2 OUT=example bash "$root/launch/mpirun_example.sh" >example.log 2>example.err ||
  { echo "FAIL: the mpirun example"; cat example.log example.err; exit 1; }
check mpirun_example example.log
test -f example.h5
