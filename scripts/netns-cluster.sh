#!/usr/bin/env bash
# A multi-host vdc cluster on this machine: 3 managers (dcmgr), a scheduler
# and 2 hvas (dummy hypervisor), each in its own network namespace with its
# own address on a private bridge (which lives in a namespace of its own, so
# the root namespace is not touched), plus a client namespace to call the
# API from. The same faults as the Go rig (e2e/chaos/rig) for manual runs.
#
#   scripts/netns-cluster.sh up              build the network, start every daemon, wait for a leader
#   scripts/netns-cluster.sh status          processes, raft state, active faults
#   scripts/netns-cluster.sh down            stop everything, remove namespaces and mounts (logs stay)
#   scripts/netns-cluster.sh curl ARGS...    curl from the client namespace (e.g. http://192.168.252.11:9001/api/12.03/host_nodes.json)
#   scripts/netns-cluster.sh partition m1 m2,m3,s1,h1,h2   hosts in different groups drop each other's packets
#   scripts/netns-cluster.sh isolate m1      switch port of m1 down (nobody reaches it)
#   scripts/netns-cluster.sh oneway m1 m2    drop IPv4 frames m1 -> m2 at the switch
#   scripts/netns-cluster.sh heal            remove every network fault
#   scripts/netns-cluster.sh kill|start|pause|resume PROC    SIGKILL / (re)start / SIGSTOP / SIGCONT
#   scripts/netns-cluster.sh clock m1 -10m   offset m1's wall clock (0 to undo)
#   scripts/netns-cluster.sh fill m1 | free m1   fill / free m1's data dir (a tmpfs)
#
# Hosts: m1 m2 m3 (.11-.13), s1 (.21), h1 h2 (.31 .32), client c (.200).
# Environment: CH_NAME (prefix of every namespace, default chs; must start
# with ch), CH_SUBNET (first three octets, default 192.168.252), BIN
# (dcmgr, scheduler, hva; default bin, see `make build`), CH_DIR (state and
# logs, default /tmp/$CH_NAME-rig).
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=${CH_NAME:-chs}
SUBNET=${CH_SUBNET:-192.168.252}
BIN=$(realpath -m "${BIN:-bin}")
DIR=${CH_DIR:-/tmp/$NAME-rig}
MANAGERS="m1 m2 m3"
PROCS="m1 m2 m3 s1 h1 h2"
SW=$NAME-sw

case $NAME in ch*) ;; *) echo "CH_NAME must start with ch" >&2; exit 2 ;; esac

die() { echo "netns-cluster: $*" >&2; exit 1; }
ns() { echo "$NAME-$1"; }
addr() {
	case $1 in
	m[1-9]) echo "$SUBNET.1${1#m}" ;;
	s[1-9]) echo "$SUBNET.2${1#s}" ;;
	h[1-9]) echo "$SUBNET.3${1#h}" ;;
	c) echo "$SUBNET.200" ;;
	*) die "unknown host $1" ;;
	esac
}
is_proc() { case " $PROCS " in *" $1 "*) return 0 ;; esac; return 1; }
joins() { local m; for m in $MANAGERS; do [ "$m" = "${1:-}" ] || printf -- '-join %s:9010 ' "$(addr "$m")"; done; }

# proc_cmd prints the command line of process p (its namespace is added by start_proc).
proc_cmd() {
	local p=$1 a
	a=$(addr "$p")
	case $p in
	m*) echo "env VDC_TEST_CLOCK_OFFSET_FILE=$DIR/$p.clock $BIN/dcmgr -node $p -data-dir $DIR/$p-data" \
		"-api $a:9001 -rpc $a:9012 -serf $a:9010 -raft $a:9011 -bootstrap-expect 3 -fast-gossip" \
		"-trusted-frontends $SUBNET.0/24 $(joins "$p")" ;;
	s*) echo "$BIN/scheduler -node-id scheduler.ch${p#s} -serf $a:9010 -rpc $a:9012 -fast-gossip $(joins)" ;;
	h*) echo "$BIN/hva -node-id hva.ch${p#h} -serf $a:9010 -rpc $a:9012 -fast-gossip $(joins)" \
		"-hypervisor dummy -cpu-cores 64 -memory-mb 65536 -monitor-interval 1s -jobs-file $DIR/$p-jobs.db" ;;
	esac
}

# pid_of prints the pid of p if it runs (the pid file names a live daemon).
pid_of() {
	local f=$DIR/$1.pid pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	[ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -q "$DIR\|$BIN" "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

start_proc() {
	local p=$1
	is_proc "$p" || die "unknown process $p"
	if pid_of "$p" >/dev/null; then die "$p runs already"; fi
	echo "==== start $p at $(date +%T.%N) ====" >>"$DIR/logs/$p.log"
	# shellcheck disable=SC2046 # the command line is split on purpose
	setsid ip netns exec "$(ns "$p")" $(proc_cmd "$p") >>"$DIR/logs/$p.log" 2>&1 </dev/null &
	echo $! >"$DIR/$p.pid"
}

signal_proc() {
	local sig=$1 p=$2 pid
	pid=$(pid_of "$p") || die "$p is not running"
	kill "-$sig" "$pid"
	if [ "$sig" = KILL ]; then
		for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.05; done
	fi
}

nft_in() { ip netns exec "$1" nft -f -; }

heal() {
	local h
	for h in $PROCS; do
		printf 'table inet rig_partition\ndelete table inet rig_partition\n' | nft_in "$(ns "$h")"
		ip -n "$SW" link set "p-$h" up
	done
	printf 'table bridge rig_oneway\ndelete table bridge rig_oneway\n' | nft_in "$SW"
}

wait_leader() {
	local m
	for _ in $(seq 300); do
		for m in $MANAGERS; do
			if ip netns exec "$(ns c)" curl -fsS -m 1 "http://$(addr "$m"):9001/internal/v1/peers" 2>/dev/null |
				grep -q '"leader":true'; then
				return 0
			fi
		done
		sleep 0.1
	done
	return 1
}

up() {
	[ "$(id -u)" = 0 ] || die "needs root (network namespaces, mounts)"
	local b h
	for b in dcmgr scheduler hva; do [ -x "$BIN/$b" ] || die "missing $BIN/$b: run 'make build' (or set BIN)"; done
	[ -e "/run/netns/$SW" ] && die "$NAME is up already ($0 down first)"
	mkdir -p "$DIR/logs"
	ip netns add "$SW"
	ip -n "$SW" link set lo up
	ip -n "$SW" link add br0 type bridge
	ip -n "$SW" link set br0 up
	for h in $PROCS c; do
		ip netns add "$(ns "$h")"
		ip link add eth0 netns "$(ns "$h")" type veth peer name "p-$h" netns "$SW"
		ip -n "$SW" link set "p-$h" master br0
		ip -n "$SW" link set "p-$h" up
		ip -n "$(ns "$h")" link set lo up
		ip -n "$(ns "$h")" addr add "$(addr "$h")/24" dev eth0
		ip -n "$(ns "$h")" link set eth0 up
	done
	for h in $MANAGERS; do
		mkdir -p "$DIR/$h-data"
		mountpoint -q "$DIR/$h-data" || mount -t tmpfs -o size=64m,mode=0700 vdc-rig "$DIR/$h-data"
	done
	for h in $PROCS; do start_proc "$h"; done
	wait_leader || die "no raft leader after 30s; see $DIR/logs"
	echo "vdc cluster $NAME up on $SUBNET.0/24 (logs in $DIR/logs)"
	for h in $MANAGERS; do echo "  $h API http://$(addr "$h"):9001/api/12.03"; done
	echo "call it with: $0 curl http://$(addr m1):9001/api/12.03/host_nodes.json"
}

down() {
	local p pid h
	for p in $PROCS; do
		if pid=$(pid_of "$p"); then kill -KILL "$pid" 2>/dev/null || true; fi
		rm -f "$DIR/$p.pid"
	done
	for h in $PROCS c sw; do
		[ -e "/run/netns/$NAME-$h" ] || continue
		# Whatever still runs there was started by this rig.
		for pid in $(ip netns pids "$NAME-$h" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
		ip netns del "$NAME-$h"
	done
	for h in $MANAGERS; do
		if mountpoint -q "$DIR/$h-data" 2>/dev/null; then umount "$DIR/$h-data" || umount -l "$DIR/$h-data"; fi
		rm -rf "${DIR:?}/$h-data" "$DIR/$h.clock"
	done
	for p in $PROCS; do rm -f "$DIR/$p-jobs.db"; done
	echo "vdc cluster $NAME down (logs kept in $DIR/logs)"
}

status() {
	local p pid m
	[ -e "/run/netns/$SW" ] || { echo "$NAME is down"; return 0; }
	for p in $PROCS; do
		if pid=$(pid_of "$p"); then
			state=$(awk '{print $3}' "/proc/$pid/stat")
			echo "$p $(addr "$p") pid $pid ($([ "$state" = T ] && echo paused || echo running))"
		else
			echo "$p $(addr "$p") not running"
		fi
	done
	for m in $MANAGERS; do
		printf '%s raft: ' "$m"
		ip netns exec "$(ns c)" curl -fsS -m 2 "http://$(addr "$m"):9001/internal/v1/status" 2>/dev/null || printf 'unreachable'
		echo
	done
	for p in $PROCS; do
		ip netns exec "$(ns "$p")" nft list table inet rig_partition >/dev/null 2>&1 && echo "$p: partition rules active"
		ip -n "$SW" link show "p-$p" | grep -q 'state DOWN' && echo "$p: isolated (switch port down)"
	done
	ip netns exec "$SW" nft list table bridge rig_oneway 2>/dev/null | grep drop || true
}

cmd=${1:-}
shift || true
case $cmd in
up) up ;;
down) down ;;
status) status ;;
curl) ip netns exec "$(ns c)" curl "$@" ;;
partition)
	[ $# -ge 2 ] || die "usage: partition GROUP GROUP... (hosts comma-separated)"
	groups=("$@")
	for i in "${!groups[@]}"; do
		cut=()
		for j in "${!groups[@]}"; do
			[ "$i" = "$j" ] && continue
			for h in ${groups[$j]//,/ }; do cut+=("$(addr "$h")"); done
		done
		set_elems=$(IFS=,; echo "${cut[*]}")
		for h in ${groups[$i]//,/ }; do
			nft_in "$(ns "$h")" <<-EOF
				table inet rig_partition
				delete table inet rig_partition
				table inet rig_partition {
					set cut { type ipv4_addr; elements = { $set_elems } }
					chain in { type filter hook input priority 0; policy accept; ip saddr @cut drop; }
					chain out { type filter hook output priority 0; policy accept; ip daddr @cut drop; }
				}
			EOF
		done
	done
	;;
isolate) ip -n "$SW" link set "p-${1:?host}" down ;;
oneway)
	nft_in "$SW" <<-EOF
		table bridge rig_oneway {
			chain forward_c { type filter hook forward priority 0; policy accept; }
		}
		add rule bridge rig_oneway forward_c iifname "p-${1:?from}" oifname "p-${2:?to}" ether type ip drop
	EOF
	;;
heal) heal ;;
kill) signal_proc KILL "${1:?process}" ;;
pause) signal_proc STOP "${1:?process}" ;;
resume) signal_proc CONT "${1:?process}" ;;
start) start_proc "${1:?process}" ;;
clock) echo "${2:?offset, e.g. -10m}" >"$DIR/${1:?manager}.clock" ;;
fill)
	dd if=/dev/zero of="$DIR/${1:?manager}-data/rig-disk-filler" bs=1M 2>/dev/null || true
	dd if=/dev/zero of="$DIR/$1-data/rig-disk-filler" bs=512 oflag=append conv=notrunc 2>/dev/null || true
	;;
free) rm -f "$DIR/${1:?manager}-data/rig-disk-filler" ;;
*) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
