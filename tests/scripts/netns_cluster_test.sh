#!/usr/bin/env bash
# Two nodes on one machine (tests/scripts/netns_cluster.sh: two network namespaces joined
# by a veth pair, Open MPI over TCP between them).
#
#   tests/scripts/netns_cluster_test.sh equivalence [<lrfind_dist>]
#     2 nodes x 1 rank and 2 nodes x 2 ranks, each rank with 1/W of the batch, give the
#     curve of one process with the whole batch (lr equal, raw loss within 1e-5
#     relative) and the same suggestions; every rank knows its node-local rank (rank r
#     of W = 2n is local r mod n of n, on the node its host name says).
#   tests/scripts/netns_cluster_test.sh partition [<lrfind_dist>]
#     the link between the nodes goes down mid-sweep (--comm-timeout 10): within
#     comm-timeout + 15 s every lrfind_dist process on both nodes has ended and mpirun
#     has returned; every rank exits with code 3; rank 0 prints one error line, naming
#     rank 1 on node B; <out>.partial is readable (stop_reason timeout, complete 0,
#     the steps so far) and <out> is not written.
#
# Exit codes: 0 pass, 1 fail, 77 skip (namespaces cannot be made here, or no python3;
# the reason is printed). Every wait is bounded; the cluster is removed at exit.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cluster="$here/netns_cluster.sh"
mode="${1:-}"
lrfind="${2:-${LRFIND_DIST:-$root/build/lrfind_dist}}"
case "$mode" in
  equivalence|partition) ;;
  *) echo "usage: $0 equivalence|partition [<lrfind_dist>]" >&2; exit 1 ;;
esac
[[ -x "$lrfind" ]] || { echo "FAIL: no lrfind_dist at $lrfind" >&2; exit 1; }
lrfind="$(cd "$(dirname "$lrfind")" && pwd)/$(basename "$lrfind")"

# This test's own cluster: fixed names, so that a run killed before its trap (a ctest
# timeout) is cleaned up by the next one; a lock so that two runs do not share it.
export LRFIND_NETNS_A=lrfind_ta LRFIND_NETNS_B=lrfind_tb LRFIND_NETNS_VETH_A=lrfind_tva \
       LRFIND_NETNS_VETH_B=lrfind_tvb LRFIND_NETNS_STATE=/tmp/lrfind_netns.test \
       LRFIND_NETNS_HOST_A=lrfind-test-a LRFIND_NETNS_HOST_B=lrfind-test-b
unset LRFIND_NETNS_PREFIX LRFIND_NETNS_KEEPALIVE_TIME LRFIND_NETNS_KEEPALIVE_INTVL \
      LRFIND_NETNS_KEEPALIVE_PROBES LRFIND_NETNS_ABORT_ON_NONZERO LRFIND_NETNS_COMM_TIMEOUT
unset LRFIND_FAULT_INJECT

# Slow builds (tests/run.sh --sanitize) scale the waits and the bounds, as elsewhere.
scale="${LRFIND_TEST_TIME_SCALE:-1}"; scale="${scale%%.*}"; [[ "$scale" =~ ^[1-9][0-9]*$ ]] || scale=1

fail() { echo "FAIL ($mode): $*" >&2; exit 1; }
show() { local f; for f in "$@"; do [[ -f "$f" ]] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }; done; }

command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 is not installed (it checks the results)"; exit 77; }
command -v flock >/dev/null 2>&1 || { echo "SKIP: flock is not installed"; exit 77; }
work="$(mktemp -d /tmp/lrfind_netns_test.XXXXXX)" || fail "mktemp"
exec 9>"/tmp/lrfind_netns_test.$(id -u).lock" || fail "cannot open the lock file"
flock -w 240 9 || fail "another netns cluster test held the lock for 240 s"
cleanup() {
  "$cluster" down >/dev/null 2>&1
  if [[ "${keep:-0}" == 1 && "${LRFIND_NETNS_TEST_KEEP:-0}" == 1 ]]; then echo "logs kept in $work" >&2
  else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
keep=1   # until the checks pass; LRFIND_NETNS_TEST_KEEP=1 keeps the logs of a failure

"$cluster" down >/dev/null 2>&1   # a cluster left by a killed run
"$cluster" up 2>"$work/up.err"
rc=$?
if [[ $rc == 77 ]]; then keep=0; echo "SKIP: $(cat "$work/up.err")"; exit 77; fi
[[ $rc == 0 ]] || { show "$work/up.err"; fail "netns_cluster.sh up exited $rc"; }
NS_A="$("$cluster" addr ns-a)"; NS_B="$("$cluster" addr ns-b)"; VETH_A="$("$cluster" addr veth-a)"
HOST_A="$("$cluster" addr host-a)"; HOST_B="$("$cluster" addr host-b)"
cd "$work" || fail "cd $work"

# The wrapper every rank runs: names its node, runs lrfind_dist, records its exit code.
cat >rank.sh <<EOF
#!/usr/bin/env bash
echo "netns_cluster_test: rank \$OMPI_COMM_WORLD_RANK on \$(hostname)" >&2
"\$@"
rc=\$?
echo "\$rc" >"$work/rc.\$OMPI_COMM_WORLD_RANK"
exit "\$rc"
EOF
chmod +x rank.sh

equivalence() {
  local common=(--data synthetic --no-shuffle --num-training 40 --threads 1 --plot '' --force)
  timeout -k 5 $((120 * scale)) "$lrfind" "${common[@]}" --batch-size 8 --out one.h5 --json one.json >one.out 2>one.err ||
    { show one.err; fail "the one-process run failed"; }
  local n w
  for n in 1 2; do
    w=$((2 * n))
    rm -f rc.*
    "$cluster" run -n "$n" -t $((240 * scale)) -- "$work/rank.sh" "$lrfind" "${common[@]}" --check-consistency --verbose \
        --batch-size $((8 / w)) --out "n$n.h5" --json "n$n.json" >"n$n.out" 2>"n$n.err"
    rc=$?
    [[ $rc == 0 ]] || { show "n$n.out" "n$n.err"; fail "2 nodes x $n rank(s): mpirun exited $rc"; }
    python3 - "$n" "$HOST_A" "$HOST_B" <<'PY' || { show "n$n.err"; fail "2 nodes x $n rank(s): see above"; }
import json, re, sys
n, host_a, host_b = int(sys.argv[1]), sys.argv[2], sys.argv[3]
w = 2 * n
err = open(f"n{n}.err").read()
bad = []
host, local = {}, {}
for r, h in re.findall(r"^netns_cluster_test: rank (\d+) on (\S+)$", err, re.M):
    host[int(r)] = h
for r, ww, l, s in re.findall(r"^lrfind_dist: rank (\d+)/(\d+) \(local (\d+)/(\d+),", err, re.M):
    if int(ww) != w or int(s) != n:
        bad.append(f"rank {r}: world {ww}, local size {s}; expected {w} and {n}")
    local[int(r)] = int(l)
if sorted(host) != list(range(w)) or sorted(local) != list(range(w)):
    bad.append(f"placement lines for ranks {sorted(local)} and hosts for {sorted(host)}, expected 0..{w-1}")
else:
    for r in range(w):
        want_host, want_local = (host_a if r < n else host_b), r % n
        if host[r] != want_host or local[r] != want_local:
            bad.append(f"rank {r}: on {host[r]} with local rank {local[r]}; expected {want_host}, local {want_local}")
one, dist = json.load(open("one.json")), json.load(open(f"n{n}.json"))
if dist["config"]["world_size"] != w or dist["config"]["global_batch_size"] != 8:
    bad.append(f"world_size {dist['config']['world_size']}, global batch {dist['config']['global_batch_size']}")
a, b = one["curve"], dist["curve"]
if len(a["loss_raw"]) != len(b["loss_raw"]) or a["lr"] != b["lr"]:
    bad.append(f"{len(b['loss_raw'])} steps / lr differ from the one-process run ({len(a['loss_raw'])} steps)")
else:
    worst = max(abs(x - y) / abs(x) for x, y in zip(a["loss_raw"], b["loss_raw"]))
    if not worst < 1e-5:
        bad.append(f"raw loss differs from one process by {worst:.3g} relative (bound 1e-5)")
if dist["suggestions"] != one["suggestions"] or dist["suggested_lr"] != one["suggested_lr"]:
    bad.append(f"suggestions differ: {dist['suggestions']} vs one process {one['suggestions']}")
for line in bad:
    print(f"2 nodes x {n}: {line}", file=sys.stderr)
if bad:
    sys.exit(1)
worst = max(abs(x - y) / abs(x) for x, y in zip(a["loss_raw"], b["loss_raw"]))
print(f"ok: 2 nodes x {n} rank(s): {len(b['loss_raw'])} steps, raw loss within {worst:.2g} of one process, "
      f"suggested lr {dist['suggested_lr']:.6g} as one process, local ranks right on {host_a} and {host_b}")
PY
  done
}

# pids of lrfind_dist processes in the two namespaces
lrfind_pids() {
  local ns p
  for ns in "$NS_A" "$NS_B"; do
    for p in $(timeout 10 ip netns pids "$ns" 2>/dev/null); do
      [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == lrfind_dist ]] && echo "$ns:$p"
    done
  done
}

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

# Reads <out>.partial: prints stop_reason=, complete=, steps_completed=, rows= lines.
read_results() {
  if command -v h5cc >/dev/null 2>&1; then
    if [[ ! -x h5read ]]; then
      cat >h5read.c <<'C'
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
static long long intAttr(hid_t f, const char* name) {
  long long v = -1;
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  if (a < 0 || H5Aread(a, H5T_NATIVE_LLONG, &v) < 0) { printf("error=attribute %s\n", name); exit(1); }
  H5Aclose(a);
  return v;
}
int main(int argc, char** argv) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) { printf("error=cannot open %s\n", argv[1]); return 1; }
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  char* s = NULL;
  hid_t a = H5Aopen(f, "stop_reason", H5P_DEFAULT);
  if (a < 0 || H5Aread(a, t, &s) < 0) { printf("error=attribute stop_reason\n"); return 1; }
  printf("stop_reason=%s\ncomplete=%lld\nsteps_completed=%lld\n", s, intAttr(f, "complete"),
         intAttr(f, "steps_completed"));
  hid_t d = H5Dopen2(f, "loss_raw", H5P_DEFAULT);
  hsize_t dims[1] = {0};
  if (d < 0 || H5Sget_simple_extent_dims(H5Dget_space(d), dims, NULL) != 1) { printf("error=loss_raw\n"); return 1; }
  double* v = malloc(sizeof(double) * (dims[0] + 1));
  if (dims[0] > 0 && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
    printf("error=read loss_raw\n");
    return 1;
  }
  printf("rows=%llu\n", (unsigned long long)dims[0]);
  return 0;
}
C
      timeout 120 h5cc -o h5read h5read.c >h5cc.log 2>&1 || { show h5cc.log; fail "h5cc could not build the reader"; }
    fi
    timeout 30 ./h5read "$1"
  elif python3 -c 'import h5py' 2>/dev/null; then
    timeout 30 python3 - "$1" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    s = f.attrs["stop_reason"]
    print(f"stop_reason={s.decode() if isinstance(s, bytes) else s}")
    print(f"complete={int(f.attrs['complete'])}\nsteps_completed={int(f.attrs['steps_completed'])}")
    print(f"rows={len(f['loss_raw'][:])}")
PY
  else
    echo "WARNING: no HDF5 reader (h5cc, h5py): checking only the HDF5 signature of $1" >&2
    python3 -c "import sys; sys.exit(open(sys.argv[1], 'rb').read(8) != b'\x89HDF\r\n\x1a\n')" "$1" &&
      echo "signature=ok"
  fi
}

partition() {
  local timeout_s=10 bound=$(( (10 + 15) * scale ))   # --comm-timeout, and the bound: comm-timeout + 15 s
  rm -f rc.*
  "$cluster" run -n 1 -t $(( 120 + 120 * scale )) -- "$work/rank.sh" "$lrfind" --data synthetic --num-training 200000 \
      --comm-timeout "$timeout_s" --threads 1 --batch-size 8 --out part.h5 --plot '' --force \
      >part.out 2>part.err &
  local job=$! _ started=0
  for _ in $(seq 1 $((240 * scale))); do   # the sweep has started on both nodes (2 min at most)
    if grep -q "^\[.*\] step [0-9]*/200000" part.err 2>/dev/null; then started=1; break; fi
    kill -0 "$job" 2>/dev/null || break
    sleep 0.5
  done
  [[ $started == 1 ]] || { show part.out part.err; fail "the sweep did not start"; }
  sleep 3
  local down_at mpirun_at="" ranks_at="" t
  timeout 10 ip -n "$NS_A" link set "$VETH_A" down || fail "cannot take $VETH_A down"
  down_at="$(now)"
  echo "link $VETH_A down at $(date +%T)"
  for _ in $(seq 1 $(( (bound + 10) * 4 ))); do   # bound + 10 s at most
    t="$(now)"
    [[ -z "$ranks_at" && -z "$(lrfind_pids)" ]] && ranks_at="$t"
    [[ -z "$mpirun_at" ]] && ! kill -0 "$job" 2>/dev/null && mpirun_at="$t"
    [[ -n "$ranks_at" && -n "$mpirun_at" ]] && break
    sleep 0.25
  done
  local left mpirun_rc
  left="$(lrfind_pids | tr '\n' ' ')"
  if [[ -n "$mpirun_at" ]]; then wait "$job"; mpirun_rc=$?; else mpirun_rc="(still running)"; fi
  local ranks_s="not within $((bound + 10)) s" mpirun_s="not within $((bound + 10)) s"
  [[ -n "$ranks_at" ]] && ranks_s="$(since "$down_at" "$ranks_at") s"
  [[ -n "$mpirun_at" ]] && mpirun_s="$(since "$down_at" "$mpirun_at") s"
  echo "after the link went down: lrfind_dist processes gone $ranks_s, mpirun returned $mpirun_s (exit code $mpirun_rc)"
  local ns p others=""
  for ns in "$NS_A" "$NS_B"; do
    for p in $(timeout 10 ip netns pids "$ns" 2>/dev/null); do others+=" $ns:$(cat "/proc/$p/comm" 2>/dev/null)"; done
  done
  echo "processes left in the namespaces (removed at exit):${others:- none}"
  local bad=()
  [[ -n "$ranks_at" && "$(since "$down_at" "$ranks_at" | cut -d. -f1)" -lt "$bound" ]] ||
    bad+=("lrfind_dist processes still running ${bound} s after the link went down: ${left:-(gone later)}")
  [[ -n "$mpirun_at" && "$(since "$down_at" "$mpirun_at" | cut -d. -f1)" -lt "$bound" ]] ||
    bad+=("mpirun had not returned ${bound} s after the link went down")
  local r
  for r in 0 1; do
    [[ "$(cat "rc.$r" 2>/dev/null)" == 3 ]] ||
      bad+=("rank $r exited with code $(cat "rc.$r" 2>/dev/null || echo '(none: killed)'), expected 3 (communication timeout)")
  done
  local errors line
  # Rank 0's error lines: the others' begin "lrfind_dist: error: rank R:" (rank 1's is
  # lost with the link anyway).
  errors="$(grep '^lrfind_dist: error:' part.err | grep -cv '^lrfind_dist: error: rank [0-9]*:')"
  line="$(grep '^lrfind_dist: error:' part.err | grep -v '^lrfind_dist: error: rank [0-9]*:' | head -n 1)"
  if [[ "$errors" != 1 ]]; then
    bad+=("rank 0 printed $errors error lines, expected one")
  elif ! [[ "$line" =~ ^lrfind_dist:\ error:\ step\ [0-9]+:\ rank\ 1\ .*\ did\ not\ answer\ within\ $timeout_s\ s ]]; then
    bad+=("the error line does not say 'step K: rank 1 (...) did not answer within $timeout_s s': $line")
  elif [[ "$line" != *"$HOST_B"* ]]; then
    bad+=("the error line does not name rank 1's host $HOST_B: $line")
  fi
  [[ ! -e part.h5 ]] || bad+=("part.h5 was written: an interrupted sweep must stay in part.h5.partial")
  if [[ ! -f part.h5.partial ]]; then
    bad+=("no part.h5.partial")
  else
    local info
    info="$(read_results part.h5.partial 2>&1)"
    if [[ "$info" == *"signature=ok"* ]]; then
      echo "part.h5.partial: an HDF5 file (contents not checked: no reader)"
    elif [[ "$info" != *"stop_reason=timeout"* || "$info" != *"complete=0"* || "$info" == *"error="* ||
          "$info" == *"steps_completed=0"* ||
          "$(sed -n 's/^steps_completed=//p' <<<"$info")" != "$(sed -n 's/^rows=//p' <<<"$info")" ]]; then
      bad+=("part.h5.partial: expected stop_reason timeout, complete 0 and every step so far (rows = steps_completed > 0); read: $(echo "$info" | tr '\n' ' ')")
    else
      echo "part.h5.partial: $(echo "$info" | tr '\n' ' ')"
    fi
  fi
  if [[ ${#bad[@]} -gt 0 ]]; then
    show part.out part.err
    for r in "${bad[@]}"; do echo "FAIL (partition): $r" >&2; done
    exit 1
  fi
  echo "ok: partition: every rank ended with exit code 3 within ${bound} s, one error line: $line"
}

"$mode"
keep=0
echo "PASS: netns_cluster_test $mode"
