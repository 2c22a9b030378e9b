#!/usr/bin/env bash
# Two "nodes" on one machine for multi-node tests: two network namespaces joined by a
# veth pair, Open MPI over TCP between them.
#
#   tests/scripts/netns_cluster.sh up            make the namespaces and the pair
#   tests/scripts/netns_cluster.sh down          remove them (and any process left in them)
#   tests/scripts/netns_cluster.sh run [-n N] [-t SECONDS] [-c COMM_TIMEOUT] -- <mpirun args>
#                       mpirun in node A with --host A:N,B:N (N: -n, $LRFIND_NETNS_NP_PER_NODE,
#                       else 1), killed after SECONDS (-t, $LRFIND_NETNS_RUN_TIMEOUT, else 600);
#                       COMM_TIMEOUT sets the keepalive below (-c, $LRFIND_NETNS_COMM_TIMEOUT,
#                       else --comm-timeout in the mpirun arguments, else 300)
#   tests/scripts/netns_cluster.sh addr a|b|subnet|veth-a|veth-b|ns-a|ns-b|host-a|host-b
#                                                 print one name, for tests
#
# Node A is namespace $LRFIND_NETNS_A (lrfind_a) with $LRFIND_NETNS_PREFIX.1 on veth
# $LRFIND_NETNS_VETH_A; node B is $LRFIND_NETNS_B (lrfind_b) with $LRFIND_NETNS_PREFIX.2.
# The addresses exist only on that pair (default 10.99.0.0/24); nothing is routed out,
# and IPv6 is off in both namespaces.
# Each node also gets its own host name ($LRFIND_NETNS_HOST_A/B: lrfind-node-a/b) in a
# UTS namespace, because Open MPI's session directories are named by host name: with
# one host name both daemons would share (and clean up) one directory. Open MPI counts
# the ranks of each --host entry as one node either way (OMPI_COMM_WORLD_LOCAL_RANK
# restarts at 0 on node B); the host names make the logs and messages say which node.
#
# The remote daemon is started by an agent script (the plm_rsh_agent, in place of ssh):
# it gets "<host> <command...>" like ssh and runs the command with bash -c inside the
# namespace of that address, in a clean environment like ssh would give (PATH, HOME,
# LD_LIBRARY_PATH, LANG). Environment variables for the ranks go through mpirun -x.
#
# Exit codes: 0 done; 77 namespaces cannot be made here (not root, no CAP_NET_ADMIN,
# no ip/unshare/mpirun, unshare denied), with the reason on stderr, so tests can skip;
# 1 any other failure; run returns mpirun's exit code (124/137 when the -t limit hit).
# Every command the script waits on is bounded by timeout.
set -uo pipefail

NS_A="${LRFIND_NETNS_A:-lrfind_a}"
NS_B="${LRFIND_NETNS_B:-lrfind_b}"
PREFIX="${LRFIND_NETNS_PREFIX:-10.99.0}"    # the first three octets of a /24
VETH_A="${LRFIND_NETNS_VETH_A:-lrfind_va}"
VETH_B="${LRFIND_NETNS_VETH_B:-lrfind_vb}"
HOST_A="${LRFIND_NETNS_HOST_A:-lrfind-node-a}"
HOST_B="${LRFIND_NETNS_HOST_B:-lrfind-node-b}"
ADDR_A="$PREFIX.1"
ADDR_B="$PREFIX.2"
SUBNET="$PREFIX.0/24"
STATE="${LRFIND_NETNS_STATE:-/tmp/lrfind_netns.$NS_A}"   # agent script lives here
CMD_TIMEOUT=20                                         # any ip/unshare/kill call

SKIP=77
die() { echo "netns_cluster: $*" >&2; exit 1; }
skip() { echo "netns_cluster: cannot make network namespaces here: $*" >&2; exit "$SKIP"; }
t() { timeout -k 5 "$CMD_TIMEOUT" "$@"; }

# The Open MPI settings of every run, on top of the ones that keep it on the pair (TCP
# only, on the pair's subnet only). Measured on Open MPI 4.1.4, Linux 6.18 (HZ 250),
# 2 nodes, the link taken down under a running job; time until mpirun returned:
#   Open MPI defaults, ranks blocked in MPI for good                 486 s
#   Open MPI defaults, ranks _exit(3) by themselves after 10 s       959 s
#   keepalive 5/2/3 only, ranks blocked                               10 s
#   keepalive 5/2/3 only, ranks _exit(3) after 3 s                   hangs (killed at 120 s)
#   keepalive 5/2/3 and abort_on_non_zero_status 0, ranks _exit(3)     9 s
#   these settings, T=10: lrfind_dist (ranks exit 3 at 10 and 15 s)  18.4 to 19.7 s
#
# oob_tcp_keepalive_time/intvl/probes (K, I, P): mpirun (on node A) learns that node B
#   is gone only when its out-of-band TCP connection to B's daemon (orted) fails. With
#   the link down and nothing to send, the connection never fails by itself, so
#   only TCP keepalive ends it; then mpirun kills what is left on node A, prints "ORTE
#   has lost communication with a remote daemon" and returns with exit code 205. The
#   orted on node B does the same on its side and ends its ranks; nothing is left.
#   Seen with ss -to in node A: while the job runs, a probe goes out every I s (an
#   answered probe re-arms the timer with I, not K); after the link goes down the
#   first unanswered probe leaves within I s and the connection is dropped P*I s
#   later, so mpirun returns between P*I and (P+1)*I s after the link went down, plus
#   the kernel's rounding of each probe timer (about 0.1 s per probe of 3 s here).
#   Defaults K=300, I=20, P=9: 486 s. I=9, P=2: 28 s. I=1, P=18: 18.4 to 19.7 s.
#   I=3, P=103: 318 s.
#   mpirun must not act before the ranks have ended themselves with their own error
#   (rank 0 at T, the others at T + min(T, 5 s); exit code 3), or it kills them first
#   (SIGTERM) and the job ends with Open MPI's message instead. So the values follow
#   the job's communication timeout T (lrfind_dist --comm-timeout; run -c T, else
#   "--comm-timeout T" in the mpirun arguments, else lrfind's default 300): K=2,
#   P*I >= T+8 with the shortest I that needs at most 127 probes (Linux's limit).
#   T=10: I=1, P=18, mpirun back after 18 to 20 s. I=1 holds up to T=119, which keeps
#   mpirun within the T+15 s that lrfind promises; T=300 needs I=3, P=103 and took
#   T+18 s (the rounding of 103 probes adds up).
# orte_abort_on_non_zero_status 0: with Open MPI's default (1), mpirun orders every
#   daemon to kill its ranks as soon as one rank exits non-zero. The order to the
#   unreachable node stays queued on the connection, Linux sends no keepalive probes
#   while data is queued, and mpirun hangs (measured: still there after 120 s; with
#   the default keepalive it returned after 959 s, when TCP gave up retransmitting).
#   With 0, a rank that exits with an error (lrfind_dist's exit 3 after --comm-timeout)
#   is recorded and mpirun waits for the others, which lrfind_dist bounds on every
#   rank. A rank killed by a signal still makes mpirun abort the whole job.
#   For the same reason a rank must not call MPI_Abort after a partition (mpirun
#   forwards the abort to every daemon; measured: mpirun hangs), nor MPI_Finalize (it
#   waits for every rank; measured: the rank hangs until mpirun kills it): it must _exit.
#   The price: mpirun no longer ends a job when one rank exits with an error, so a
#   rank stopped (SIGSTOP) on a node mpirun can reach is never killed. Not an Open MPI
#   setting, but it lifts that price here: net.ipv4.tcp_retries2=5 in both namespaces
#   (a per-namespace sysctl) with abort_on_non_zero_status left at 1 made the queued
#   kill order fail quickly: mpirun returned 12.3 s after the link went down (ranks
#   _exit(3) at 10 s), with exit code 3. On a real cluster that sysctl is host-wide.
# LRFIND_NETNS_KEEPALIVE_TIME/INTVL/PROBES and LRFIND_NETNS_ABORT_ON_NONZERO override
# these values (for experiments).
KEEPALIVE_TIME="${LRFIND_NETNS_KEEPALIVE_TIME:-2}"
ABORT_ON_NONZERO="${LRFIND_NETNS_ABORT_ON_NONZERO:-0}"

# (No "cmd | grep -q" under pipefail: grep's early exit can fail the pipeline.)
have_ns() { [[ -e "/run/netns/$1" ]] || [[ " $(t ip netns list 2>/dev/null | awk '{print $1}' | tr '\n' ' ') " == *" $1 "* ]]; }

preflight() {
  local tool
  for tool in ip unshare timeout; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
  done
  [[ "$(id -u)" == 0 ]] || skip "not root (ip netns needs CAP_NET_ADMIN and CAP_SYS_ADMIN)"
}

is_up() {
  have_ns "$NS_A" && have_ns "$NS_B" && [[ -x "$STATE/agent" ]] &&
    [[ "$(t ip -n "$NS_A" -o addr show dev "$VETH_A" 2>/dev/null)" == *"inet $ADDR_A/24"* ]] &&
    [[ "$(t ip -n "$NS_B" -o addr show dev "$VETH_B" 2>/dev/null)" == *"inet $ADDR_B/24"* ]] &&
    [[ "$(t ip -n "$NS_A" -o link show dev "$VETH_A" 2>/dev/null)" == *"state UP"* ]] &&
    [[ "$(t ip -n "$NS_B" -o link show dev "$VETH_B" 2>/dev/null)" == *"state UP"* ]]
}

write_agent() {
  mkdir -p "$STATE" || die "cannot create $STATE"
  # Called by mpirun as: agent <host> <command words...>, like ssh: the words are joined
  # with spaces and run by a shell on that host.
  cat >"$STATE/agent.tmp" <<AGENT || die "cannot write $STATE/agent"
#!/usr/bin/env bash
# plm_rsh_agent for tests/scripts/netns_cluster.sh: runs a command "on" a node.
host="\$1"; shift
case "\$host" in
  $ADDR_A|$HOST_A) ns=$NS_A; name=$HOST_A ;;
  $ADDR_B|$HOST_B) ns=$NS_B; name=$HOST_B ;;
  *) echo "netns_cluster agent: unknown host \$host" >&2; exit 255 ;;
esac
exec env -i PATH="\$PATH" HOME="\${HOME:-/root}" LD_LIBRARY_PATH="\${LD_LIBRARY_PATH:-}" LANG="\${LANG:-C}" \\
  ip netns exec "\$ns" unshare --uts -- bash -c 'hostname "\$0" && exec bash -c "\$1"' "\$name" "\$*"
AGENT
  if ! { chmod +x "$STATE/agent.tmp" && mv -f "$STATE/agent.tmp" "$STATE/agent"; }; then
    die "cannot write $STATE/agent"
  fi
}

cmd_down() {
  local ns pids _
  for ns in "$NS_A" "$NS_B"; do
    have_ns "$ns" || continue
    # Processes left in the namespace (a hung mpirun, orted or rank): they were started
    # through this script; end them by pid so the namespace really goes away.
    for _ in 1 2 3 4 5; do
      pids="$(t ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
      [[ -z "${pids// /}" ]] && break
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null
      sleep 0.5
    done
    [[ -n "${pids// /}" ]] && echo "netns_cluster: processes $pids in $ns did not end" >&2
    t ip netns del "$ns" 2>/dev/null || { have_ns "$ns" && die "cannot delete namespace $ns"; }
  done
  # The pair is made inside the namespaces and goes with them. Open MPI's session
  # directories of these host names: a killed job leaves them behind (host names are
  # per cluster: two clusters at once need their own LRFIND_NETNS_HOST_A/B).
  rm -rf "/tmp/ompi.$HOST_A.$(id -u)" "/tmp/ompi.$HOST_B.$(id -u)"
  rm -rf "$STATE"
  return 0
}

cmd_up() {
  preflight
  if is_up; then return 0; fi
  cmd_down   # a half-made cluster from an earlier, interrupted run
  local err
  err="$(t ip netns add "$NS_A" 2>&1)" || skip "ip netns add $NS_A: $err"
  err="$(t ip netns add "$NS_B" 2>&1)" || { cmd_down; skip "ip netns add $NS_B: $err"; }
  local ns
  for ns in "$NS_A" "$NS_B"; do   # no IPv6 link-local addresses either (best effort)
    # shellcheck disable=SC2016
    t ip netns exec "$ns" sh -c 'for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 \
        /proc/sys/net/ipv6/conf/default/disable_ipv6; do [ -w "$f" ] && echo 1 >"$f"; done' >/dev/null 2>&1
  done
  err="$(t ip -n "$NS_A" link add "$VETH_A" type veth peer name "$VETH_B" netns "$NS_B" 2>&1)" ||
    { cmd_down; skip "cannot make a veth pair: $err"; }
  err="$(t ip netns exec "$NS_A" unshare --uts -- hostname "$HOST_A" 2>&1)" ||
    { cmd_down; skip "cannot run in a namespace with its own host name (ip netns exec, unshare --uts): $err"; }
  if ! { t ip -n "$NS_A" addr add "$ADDR_A/24" dev "$VETH_A" &&
         t ip -n "$NS_B" addr add "$ADDR_B/24" dev "$VETH_B" &&
         t ip -n "$NS_A" link set lo up && t ip -n "$NS_B" link set lo up &&
         t ip -n "$NS_A" link set "$VETH_A" up && t ip -n "$NS_B" link set "$VETH_B" up; }; then
    cmd_down
    die "cannot configure the veth pair"
  fi
  write_agent
  # Bounded wait for the pair to carry traffic (the link takes a moment to come up).
  local _
  for _ in $(seq 1 50); do
    t ip netns exec "$NS_A" ping -c 1 -W 1 "$ADDR_B" >/dev/null 2>&1 && break
    if ! command -v ping >/dev/null 2>&1; then
      [[ "$(t ip -n "$NS_B" -o link show "$VETH_B")" == *"state UP"* ]] && break
    fi
    sleep 0.1
  done
  echo "netns_cluster: up: $NS_A ($HOST_A, $ADDR_A on $VETH_A) <-> $NS_B ($HOST_B, $ADDR_B on $VETH_B)" >&2
}

cmd_run() {
  local n="${LRFIND_NETNS_NP_PER_NODE:-1}" limit="${LRFIND_NETNS_RUN_TIMEOUT:-600}"
  local comm="${LRFIND_NETNS_COMM_TIMEOUT:-}" intvl probes arg prev=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -n) n="$2"; shift 2 ;;
      -t) limit="$2"; shift 2 ;;
      -c) comm="$2"; shift 2 ;;
      --) shift; break ;;
      *) die "run: unknown option $1 (usage: run [-n N] [-t SECONDS] [-c COMM_TIMEOUT] -- <mpirun args>)" ;;
    esac
  done
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "run: -n $n: give the ranks per node, a positive integer"
  [[ "$limit" =~ ^[1-9][0-9]*$ ]] || die "run: -t $limit: give the time limit in whole seconds"
  if [[ -z "$comm" ]]; then
    for arg in "$@"; do
      [[ "$prev" == --comm-timeout ]] && comm="$arg"
      [[ "$arg" == --comm-timeout=* ]] && comm="${arg#--comm-timeout=}"
      prev="$arg"
    done
  fi
  comm="${comm:-300}"
  [[ "$comm" =~ ^[0-9]+([.][0-9]*)?$ ]] || die "run: comm timeout $comm: give seconds"
  local whole="${comm%%.*}" need
  [[ "$comm" == *.*[1-9]* ]] && whole=$((whole + 1))   # whole seconds, rounded up
  # probes x interval >= T + 8, with the shortest interval that needs at most 127 probes
  # (Linux's limit)
  need=$((whole + 8))
  intvl=$(( (need + 126) / 127 ))
  probes=$(( (need + intvl - 1) / intvl ))
  intvl="${LRFIND_NETNS_KEEPALIVE_INTVL:-$intvl}"
  probes="${LRFIND_NETNS_KEEPALIVE_PROBES:-$probes}"
  command -v mpirun >/dev/null 2>&1 || skip "mpirun is not installed"
  is_up || die "the cluster is not up; run '$0 up' first"
  # timeout -k: mpirun ignores SIGTERM while it cannot reach a node; SIGKILL 10 s later.
  # shellcheck disable=SC2016
  timeout -k 10 "$limit" ip netns exec "$NS_A" unshare --uts -- \
    bash -c 'hostname "$0" && exec "$@"' "$HOST_A" \
    mpirun --allow-run-as-root --oversubscribe \
      --host "$ADDR_A:$n,$ADDR_B:$n" \
      --mca plm_rsh_agent "$STATE/agent" \
      --mca btl tcp,self \
      --mca oob_tcp_if_include "$SUBNET" --mca btl_tcp_if_include "$SUBNET" \
      --mca oob_tcp_keepalive_time "$KEEPALIVE_TIME" \
      --mca oob_tcp_keepalive_intvl "$intvl" \
      --mca oob_tcp_keepalive_probes "$probes" \
      --mca orte_abort_on_non_zero_status "$ABORT_ON_NONZERO" \
      "$@"
}

cmd_addr() {
  case "${1:-}" in
    a) echo "$ADDR_A" ;; b) echo "$ADDR_B" ;; subnet) echo "$SUBNET" ;;
    veth-a) echo "$VETH_A" ;; veth-b) echo "$VETH_B" ;;
    ns-a) echo "$NS_A" ;; ns-b) echo "$NS_B" ;;
    host-a) echo "$HOST_A" ;; host-b) echo "$HOST_B" ;;
    *) die "addr: one of a, b, subnet, veth-a, veth-b, ns-a, ns-b, host-a, host-b" ;;
  esac
}

case "${1:-}" in
  up) cmd_up ;;
  down) preflight; cmd_down ;;
  run) shift; cmd_run "$@" ;;
  addr) cmd_addr "${2:-}" ;;
  *) echo "usage: $0 up | down | run [-n N] [-t SECONDS] -- <mpirun args> | addr <name>" >&2; exit 1 ;;
esac
