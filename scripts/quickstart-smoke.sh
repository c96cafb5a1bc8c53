#!/usr/bin/env bash
# Runs the quick start twice in a scratch data dir and checks that the demo
# data is there and was seeded once: what `make run` promises a new user.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build
export VDC_DATA
VDC_DATA=$(mktemp -d /tmp/vdc-smoke.XXXXXX)
API=http://127.0.0.1:${VDC_API_PORT:-9001}/api/12.03
H='X_VDC_ACCOUNT_UUID: a-shpoolxx'
QS_PID=
cleanup() {
	# A failed check must not leave the daemons holding the ports.
	if [ -n "$QS_PID" ]; then kill -TERM "$QS_PID" 2>/dev/null || true; wait "$QS_PID" 2>/dev/null || true; fi
	rm -rf "$VDC_DATA"
}
trap cleanup EXIT

run_once() {
	local out="$VDC_DATA/quickstart.out"
	./scripts/quickstart.sh >"$out" 2>&1 &
	local pid=$!
	QS_PID=$pid
	for _ in $(seq 600); do
		grep -qs "vdc is running" "$out" && break
		kill -0 "$pid" 2>/dev/null || { cat "$out"; echo "quick start exited early" >&2; return 1; }
		sleep 0.1
	done
	grep -q "vdc is running" "$out" || { cat "$out"; echo "quick start did not come up" >&2; return 1; }
	curl -fsS -H "$H" "$API/networks/nw-demo1.yml" | grep -q '^:id: nw-demo1$'
	curl -fsS -H "$H" "$API/images/wmi-demo1.json" | grep -q '"state":"available"'
	local hosts
	hosts=$(curl -fsS "$API/host_nodes.json" | grep -o '"total":[0-9]*')
	[ "$hosts" = '"total":1' ] || { echo "host nodes after seeding: $hosts" >&2; return 1; }
	# An instance runs on the demo hva and terminates, as the printed example promises.
	local id state=""
	id=$(curl -fsS -H "$H" -X POST -d image_id=wmi-demo1 -d hypervisor=dummy -d cpu_cores=1 -d memory_size=512 \
		--data-urlencode 'vifs={"eth0":{"network":"nw-demo1"}}' "$API/instances.yml" | awk '/^:id:/{print $2}')
	for _ in $(seq 300); do
		state=$(curl -fsS -H "$H" "$API/instances/$id.yml" | awk '/^:state:/{print $2}')
		[ "$state" = running ] && break
		sleep 0.1
	done
	[ "$state" = running ] || { echo "instance $id is $state, not running" >&2; tail -20 "$VDC_DATA"/log/*.log >&2; return 1; }
	curl -fsS -H "$H" -X DELETE "$API/instances/$id.yml" >/dev/null
	for _ in $(seq 300); do
		state=$(curl -fsS -H "$H" "$API/instances/$id.yml" | awk '/^:state:/{print $2}')
		[ "$state" = terminated ] && break
		sleep 0.1
	done
	[ "$state" = terminated ] || { echo "instance $id is $state, not terminated" >&2; return 1; }
	kill -TERM "$pid"
	wait "$pid" || true
	QS_PID=
}
run_once
run_once
echo "quick start smoke: ok (ran twice, seeded once)"
