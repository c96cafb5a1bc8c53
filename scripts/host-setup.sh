#!/usr/bin/env bash
# Prepares this machine for the real-component tiers (notes/real-components.md):
# installs libvirt/QEMU, tgt, nftables, qemu-utils, and starts virtlogd,
# libvirtd and tgtd if they are not running. Idempotent; needs root.
# `host-setup.sh stop` stops the daemons it started.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
run=/run/vdc-host
mkdir -p "$run"

if [ "${1:-}" = stop ]; then
	tgtadm --op delete --mode system >/dev/null 2>&1 || true
	for p in libvirtd virtlogd; do
		[ -f "$run/$p.pid" ] && kill "$(cat "$run/$p.pid")" 2>/dev/null || true
	done
	exit 0
fi

[ "$(id -u)" = 0 ] || { echo "host-setup: needs root" >&2; exit 1; }

pkgs=(libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 libvirt-clients
	qemu-utils qemu-block-extra libiscsi-bin tgt nftables iptables iproute2
	iputils-ping xfsprogs dosfstools mtools busybox-static cpio syslinux syslinux-common)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The QEMU driver refuses to start unless its build-time user exists.
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -M -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /var/log/libvirt /var/lib/libvirt /run/libvirt /etc/libvirt
cat > /etc/libvirt/qemu.conf <<'X'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
X

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
alive "$run/virtlogd.pid" || virtlogd -d --pid-file="$run/virtlogd.pid"
if ! alive "$run/libvirtd.pid"; then
	libvirtd -d --pid-file="$run/libvirtd.pid"
fi
for _ in $(seq 100); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
[ -S /run/libvirt/libvirt-sock ] || { tail -20 /var/log/libvirt/libvirtd.log >&2; exit 1; }
virsh -c qemu:///system version >/dev/null # warms QEMU's capability cache once

if ! tgtadm --lld iscsi --op show --mode sys >/dev/null 2>&1; then
	tgtd --iscsi portal=127.0.0.1:3260
	for _ in $(seq 50); do tgtadm --lld iscsi --op show --mode sys >/dev/null 2>&1 && break; sleep 0.1; done
fi
tgtadm --lld iscsi --op show --mode sys >/dev/null
echo "host-setup: libvirtd, virtlogd and tgtd are running"
