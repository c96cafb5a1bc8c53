#!/usr/bin/env bash
# Quick start: one manager on this machine with demo data, in the foreground.
# Data lives in ./var/quickstart; running it again keeps the data and seeds
# nothing twice. Ctrl-C stops everything.
#
# The hva runs real guests with libvirt (QEMU, TCG) when libvirtd answers on
# its socket, and the demo image is then the tiny guest of
# scripts/build-guest-image.sh; otherwise it runs the dummy hypervisor.
# VDC_HYPERVISOR=libvirt|dummy chooses explicitly (default auto).
#
# VDC_BRIDGE=<name> (libvirt only, root) also gives the guests a network:
# the DC network "public" is that bridge (created if absent, no uplink, the
# host on it as nw-demo1's gateway 10.0.2.1/24) and security groups are
# enforced with nftables (tables named after the bridge). The bridge, the
# address and the tables are left in place when the quick start stops.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
DATA=${VDC_DATA:-var/quickstart}
API_PORT=${VDC_API_PORT:-9001}
API=http://127.0.0.1:${API_PORT}
export VDC_API=$API
ACCOUNT=a-shpoolxx

for b in dcmgr vdc-manage scheduler hva; do
	[ -x "$BIN/$b" ] || { echo "missing $BIN/$b: run 'make build' first" >&2; exit 1; }
done
mkdir -p "$DATA/backups" "$DATA/log"
DATA_ABS=$(cd "$DATA" && pwd)

HYPERVISOR=${VDC_HYPERVISOR:-auto}
LIBVIRT_SOCKET=${VDC_LIBVIRT_SOCKET:-/run/libvirt/libvirt-sock}
if [ "$HYPERVISOR" = auto ]; then
	HYPERVISOR=dummy
	if [ -S "$LIBVIRT_SOCKET" ] && command -v virsh >/dev/null &&
		virsh -c "qemu:///system?socket=$LIBVIRT_SOCKET" version >/dev/null 2>&1; then
		HYPERVISOR=libvirt
	fi
fi
case $HYPERVISOR in
libvirt | dummy) ;;
*) echo "VDC_HYPERVISOR=$HYPERVISOR: want libvirt, dummy or auto" >&2; exit 1 ;;
esac
# The demo catalog differs by hypervisor: data seeded for one is not reused
# with the other.
if [ -f "$DATA/hypervisor" ] && [ "$(cat "$DATA/hypervisor")" != "$HYPERVISOR" ]; then
	echo "$DATA was seeded for the $(cat "$DATA/hypervisor") hypervisor; remove it or set VDC_HYPERVISOR=$(cat "$DATA/hypervisor")" >&2
	exit 1
fi
if [ "$HYPERVISOR" = libvirt ]; then
	echo "hypervisor: libvirt (libvirtd answers on $LIBVIRT_SOCKET): the demo image boots for real under QEMU (TCG)"
	IMAGE=$(scripts/build-guest-image.sh | tail -n 1)
	cp -f "$IMAGE" "$DATA/backups/vdc-tiny.raw"
	IMAGE_SIZE=$(stat -c %s "$DATA/backups/vdc-tiny.raw")
	IMAGE_MD5=$(md5sum <"$DATA/backups/vdc-tiny.raw" | cut -d' ' -f1)
	HOST_HYPERVISOR=qemu
	HVA_ARGS=(-hypervisor libvirt -libvirt-socket "$LIBVIRT_SOCKET" -virt-type qemu -data-dir "$DATA/instances")
else
	echo "hypervisor: dummy (no libvirtd on $LIBVIRT_SOCKET, or VDC_HYPERVISOR=dummy): instances reach running without a real VM"
	HOST_HYPERVISOR=dummy
	HVA_ARGS=(-hypervisor dummy -cpu-cores 16 -memory-mb 32768)
fi
printf '%s' "$HYPERVISOR" >"$DATA/hypervisor"

BRIDGE=${VDC_BRIDGE:-}
if [ -n "$BRIDGE" ]; then
	[ "$HYPERVISOR" = libvirt ] || { echo "VDC_BRIDGE needs the libvirt hypervisor" >&2; exit 1; }
	[ "$(id -u)" = 0 ] || { echo "VDC_BRIDGE needs root (bridge, taps, nftables)" >&2; exit 1; }
	printf '{"dc_networks": {"public": {"bridge": "%s"}}, "netfilter": true, "netfilter_table": "%s"}\n' \
		"$BRIDGE" "$BRIDGE" >"$DATA/hva.json"
	HVA_ARGS+=(-config "$DATA/hva.json")
	# The host is nw-demo1's gateway on the bridge: it reaches the guests.
	ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
	ip -4 addr show dev "$BRIDGE" | grep -q ' 10\.0\.2\.1/24 ' || ip addr add 10.0.2.1/24 dev "$BRIDGE"
	ip link set "$BRIDGE" up
	echo "host network: DC network public is bridge $BRIDGE (host 10.0.2.1/24), security groups in nftables tables $BRIDGE"
fi

"$BIN/dcmgr" -node demo -data-dir "$DATA/dcmgr" -api "0.0.0.0:${API_PORT}" \
	-rpc 127.0.0.1:9012 -serf 127.0.0.1:9010 -raft 127.0.0.1:9011 -bootstrap-expect 1 \
	>>"$DATA/log/dcmgr.log" 2>&1 &
DCMGR=$!
"$BIN/scheduler" -node-id scheduler.demo1 -serf 127.0.0.1:9020 -rpc 127.0.0.1:9021 -join 127.0.0.1:9010 \
	>>"$DATA/log/scheduler.log" 2>&1 &
SCHED=$!
"$BIN/hva" -node-id hva.demo1 -serf 127.0.0.1:9022 -rpc 127.0.0.1:9023 -join 127.0.0.1:9010 \
	"${HVA_ARGS[@]}" >>"$DATA/log/hva.log" 2>&1 &
HVA=$!
stop() {
	trap - INT TERM EXIT
	echo; echo "stopping hva, scheduler and dcmgr"
	kill -TERM "$HVA" "$SCHED" 2>/dev/null || true
	wait "$HVA" "$SCHED" 2>/dev/null || true
	kill -TERM "$DCMGR" 2>/dev/null || true
	wait "$DCMGR" 2>/dev/null || true
}
trap stop INT TERM EXIT

# Wait for the API (the manager elects itself leader within a second; a
# loaded machine may take longer).
for _ in $(seq 300); do
	if curl -fsS "$API/api/12.03/host_nodes.json" >/dev/null 2>&1; then break; fi
	kill -0 "$DCMGR" 2>/dev/null || { echo "dcmgr exited; see $DATA/log/dcmgr.log" >&2; tail -20 "$DATA/log/dcmgr.log" >&2; exit 1; }
	sleep 0.1
done

m() { "$BIN/vdc-manage" --if-missing "$@" >/dev/null; }
# The demo account exists as soon as it is named in the account header.
curl -fsS -H "X_VDC_ACCOUNT_UUID: $ACCOUNT" "$API/api/12.03/ssh_key_pairs.json" >/dev/null
m group add host shhost --uuid hng-shhost
m group add storage shstor --uuid sng-shstor
m group add network shnet --uuid nwg-shnet
m dcnetwork add public --uuid dcn-demo1 --description "demo DC network" \
	--allow-new-networks --mode securitygroup,passthrough
m network add --uuid nw-demo1 --dc-network dcn-demo1 --ipv4-network 10.0.2.0 --prefix 24 \
	--gw 10.0.2.1 --network-mode securitygroup --dhcp-range default --display-name demo1 \
	--account-id "$ACCOUNT"
m host add hva.demo1 --uuid hn-demo1 --hypervisor "$HOST_HYPERVISOR" --arch x86_64 \
	--cpu-cores 16 --memory-size 32768 --disk-space 102400 --display-name demo1
m storage add sta.demo1 --uuid sn-demo1 --storage-type iscsi --ip-address 127.0.0.1 \
	--disk-space 102400 --display-name demo1
m backupstorage add --uuid bkst-demo1 --storage-type local \
	--base-uri "file://$DATA_ABS/backups/" --display-name "local backups"
if [ "$HYPERVISOR" = libvirt ]; then
	# The tiny guest, registered with its real size and md5 (the hva checks it).
	m backupobject add --uuid bo-demo1 --backup-storage-id bkst-demo1 --object-key vdc-tiny.raw \
		--size "$IMAGE_SIZE" --checksum "$IMAGE_MD5" --container-format none --display-name "tiny guest disk" \
		--state available --account-id "$ACCOUNT"
	m image add --uuid wmi-demo1 --backup-object-id bo-demo1 --arch x86_64 --boot-dev-type local \
		--file-format raw --display-name "tiny guest" --is-public --state available --account-id "$ACCOUNT"
else
	m backupobject add --uuid bo-demo1 --backup-storage-id bkst-demo1 --object-key demo1.raw \
		--size 33554432 --checksum 0 --display-name "demo image disk" --state available --account-id "$ACCOUNT"
	m image add --uuid wmi-demo1 --backup-object-id bo-demo1 --arch x86_64 --boot-dev-type local \
		--display-name "demo image" --is-public --state available --account-id "$ACCOUNT"
fi

# The hva's serf membership makes hn-demo1 online; instances need an online host.
for _ in $(seq 100); do
	curl -fsS "$API/api/12.03/host_nodes/hn-demo1.json" 2>/dev/null | grep -q '"status":"online"' && break
	sleep 0.1
done

if [ "$HYPERVISOR" = libvirt ] && [ -n "$BRIDGE" ]; then
	# One vnic on nw-demo1; the guest answers HTTP on 80 and ping at the
	# address the API shows (from the host; other guests as its groups say).
	EXAMPLE="-d image_id=wmi-demo1 -d hypervisor=qemu -d cpu_cores=1 -d memory_size=128 \\
       -d hostname=demo --data-urlencode 'vifs={\"eth0\":{\"index\":\"0\",\"network\":\"nw-demo1\"}}'"
	HVA_NOTE="hva (libvirt, QEMU TCG, node hva.demo1; vnics on bridge $BRIDGE; instance files in $DATA/instances,
serial consoles in $DATA/instances/_console/<instance id>.log; instances keep running after Ctrl-C)"
elif [ "$HYPERVISOR" = libvirt ]; then
	# No host network is configured (VDC_BRIDGE): the demo instance has no vnic.
	EXAMPLE="-d image_id=wmi-demo1 -d hypervisor=qemu -d cpu_cores=1 -d memory_size=128 \\
       -d hostname=demo --data-urlencode 'vifs={}'"
	HVA_NOTE="hva (libvirt, QEMU TCG, node hva.demo1; instance files in $DATA/instances,
serial consoles in $DATA/instances/_console/<instance id>.log; instances keep running after Ctrl-C)"
else
	EXAMPLE="-d image_id=wmi-demo1 -d hypervisor=dummy \\
       -d cpu_cores=1 -d memory_size=512 --data-urlencode 'vifs={\"eth0\":{\"network\":\"nw-demo1\"}}'"
	HVA_NOTE="hva (dummy hypervisor, node hva.demo1)"
fi
cat <<MSG

vdc is running: the 12.03 API is at $API/api/12.03 (data in $DATA, log in $DATA/log/dcmgr.log).
hypervisor: $HYPERVISOR
A scheduler and an $HVA_NOTE run beside it (logs in $DATA/log/).
Demo data: account $ACCOUNT, DC network dcn-demo1, network nw-demo1 (10.0.2.0/24, DHCP range),
host node hn-demo1 (hva.demo1), storage node sn-demo1 (sta.demo1), backup storage bkst-demo1,
backup object bo-demo1, image wmi-demo1, groups hng-shhost / sng-shstor / nwg-shnet.

Try:
  curl -s -H 'X_VDC_ACCOUNT_UUID: $ACCOUNT' -X POST $EXAMPLE \
       $API/api/12.03/instances.yml
  curl -s -H 'X_VDC_ACCOUNT_UUID: $ACCOUNT' $API/api/12.03/instances.yml
  curl -s -H 'X_VDC_ACCOUNT_UUID: $ACCOUNT' $API/api/12.03/networks.yml
  curl -s -H 'X_VDC_ACCOUNT_UUID: $ACCOUNT' -X POST --data-urlencode display_name=mykey $API/api/12.03/ssh_key_pairs.json
  curl -s -H 'X_VDC_ACCOUNT_UUID: $ACCOUNT' -X POST --data-urlencode 'rule=tcp:22,22,ip4:0.0.0.0' $API/api/12.03/security_groups.yml
  $BIN/vdc-manage host list
  $BIN/vdc-manage cluster peers

Ctrl-C stops it.
MSG
wait "$DCMGR"
