#!/usr/bin/env bash
# Builds vdc-tiny.raw, the tiny real guest for tests and the quick start: a
# raw BIOS-bootable disk (whole-disk FAT with syslinux) holding Debian's cloud
# kernel and an initramfs made of busybox-static, the virtio/vfat/ACPI-button
# modules and an /init that reads the vdc metadata drive (label METADATA),
# configures hostname and NICs (announcing each address with a gratuitous
# ARP), prints
#   vdc-guest: booted <instance-id> hostname=<hostname> ips=<a,b>
# on the serial console, serves HTTP on 80 (index: "<instance-id> <hostname>")
# and TCP echo on 7, answers ping, and powers off on an ACPI power-button press.
#
# Metadata drive the guest reads (the hva writes it): vfat over the whole
# disk (a partition labelled METADATA works too), label METADATA, bare
# values without trailing newline: meta-data/{instance-id,local-hostname,
# hostname,x-account-id,first-boot,public-keys/0/openssh-key}, user-data,
# metadata.yml, and per vnic meta-data/network/interfaces/macs/<mac>/
# {device-number,local-ipv4s,x-netmask,x-prefix,x-network,x-broadcast,
# x-gateway,x-dns,x-metric} where <mac> is lowercase aa-bb-cc-dd-ee-ff:
# dashes, because FAT names cannot hold ':'. NICs whose MAC has no directory
# stay down. A user-data starting with "#!" runs in the background after
# networking, on every boot (the guest keeps no state across boots).
#
# Usage: scripts/build-guest-image.sh [--out DIR]
#   DIR defaults to var/guest-image under the repository. Writes
#   DIR/vdc-tiny.raw and DIR/vdc-tiny.raw.md5 (md5 hex only) and prints the
#   image path as the last line on stdout (everything else goes to stderr).
#   The result is reused while the inputs are unchanged: the cache key hashes
#   this script and the versions of every package the image is made from.
#   Same inputs give the same bytes (fixed timestamps and volume ids).
#
# Needs root only when packages are missing (apt-get install) or apt's lists
# are stale; only Debian's archive is contacted.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$repo/var/guest-image
while [ $# -gt 0 ]; do
	case $1 in
	--out) [ $# -ge 2 ] || { echo "build-guest-image: --out needs a directory" >&2; exit 2; }
		out=$2; shift 2 ;;
	--out=*) out=${1#--out=}; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
	*) echo "build-guest-image: unknown argument $1 (usage: $0 [--out DIR])" >&2; exit 2 ;;
	esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
image=$out/vdc-tiny.raw
# One build at a time per DIR (parallel test packages may all ask for it).
exec 9>"$out/.lock"
flock 9
log() { echo "build-guest-image: $*" >&2; }

# Host tools the build runs (not what goes into the image).
tools=(syslinux syslinux-common mtools dosfstools busybox-static cpio)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
updated=0
apt_update() {
	[ "$updated" = 1 ] && return 0
	log "apt-get update"
	apt-get update -qq >&2
	updated=1
}
missing=()
for p in "${tools[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || { log "missing packages ${missing[*]} (run as root or scripts/host-setup.sh)"; exit 1; }
	apt_update
	log "apt-get install ${missing[*]}"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The guest runs the host's busybox: it must be the static build.
dpkg-query -S /bin/busybox 2>/dev/null | grep -q '^busybox-static:' ||
	{ log "/bin/busybox does not come from busybox-static"; exit 1; }

# The cloud kernel's versioned package changes with Debian point releases:
# resolve it through the linux-image-cloud-amd64 metapackage.
resolve_kernel() {
	# The metapackage pins the exact version: one (slow) apt-cache call.
	read -r kpkg kver < <(apt-cache show --no-all-versions linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^Depends:.*\(linux-image-[^ ,]*-cloud-amd64\) (= \([^)]*\)).*/\1 \2/p' | head -n 1) || true
	[ -n "${kpkg:-}" ] && [ -n "${kver:-}" ]
}
if ! resolve_kernel; then
	[ "$(id -u)" = 0 ] || { log "apt cannot resolve linux-image-cloud-amd64 (run apt-get update as root)"; exit 1; }
	apt_update
	resolve_kernel || { log "apt cannot resolve linux-image-cloud-amd64 after apt-get update"; exit 1; }
fi

pkgver() { dpkg-query -W -f='${Version}' "$1"; }
cache_key() {
	{
		sha256sum <"${BASH_SOURCE[0]}"
		echo "$kpkg=$kver"
		for p in "${tools[@]}"; do echo "$p=$(pkgver "$p")"; done
	} | sha256sum | cut -d' ' -f1
}
key=$(cache_key)

if [ -f "$image" ] && [ -f "$image.md5" ] && [ "$(cat "$out/.key" 2>/dev/null)" = "$key" ] &&
	[ "$(md5sum <"$image" | cut -d' ' -f1)" = "$(cat "$image.md5")" ]; then
	log "reusing $image ($kpkg $kver)"
	echo "$image"
	exit 0
fi

t0=$(date +%s.%N)
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Kernel package: kept in DIR/debs so a rebuild after a script change does not
# download it again.
mkdir -p "$out/debs"
deb=$(ls "$out/debs/${kpkg}_${kver//:/%3a}_amd64.deb" 2>/dev/null || true)
if [ -z "$deb" ]; then
	rm -f "$out/debs/"linux-image-*.deb
	log "apt-get download $kpkg=$kver"
	if ! (cd "$out/debs" && apt-get download -qq -o APT::Sandbox::User=root "$kpkg=$kver" >&2); then
		# A stale list names a version the archive no longer has.
		[ "$(id -u)" = 0 ] || exit 1
		apt_update
		resolve_kernel
		key=$(cache_key)
		(cd "$out/debs" && apt-get download -qq -o APT::Sandbox::User=root "$kpkg=$kver" >&2)
	fi
	deb=$(ls "$out/debs/${kpkg}_"*.deb)
fi
dpkg-deb -x "$deb" "$work/k"
vmlinuz=$(ls "$work"/k/boot/vmlinuz-*)
uname_r=${vmlinuz##*/vmlinuz-}
kmods=$work/k/lib/modules/$uname_r
# Every file in the image gets this timestamp, so equal inputs give equal bytes.
epoch=$(stat -c %Y "$vmlinuz")

# initramfs root
rd=$work/rd
mkdir -p "$rd"/{bin,sbin,usr/bin,usr/sbin,etc/acpi/PWRF,proc,sys,dev,run,tmp,mnt/metadata,www,var/log,root}
cp /bin/busybox "$rd/bin/busybox"
"$rd/bin/busybox" --list-full | while read -r a; do
	[ "$a" = bin/busybox ] || ln -s /bin/busybox "$rd/$a"
done

# Modules, with their dependencies (read from each .ko's modinfo), so that
# busybox modprobe loads them in the right order inside the guest.
want=(virtio_pci virtio_blk virtio_net fat vfat nls_cp437 nls_ascii nls_iso8859-1 nls_utf8 button evdev)
declare -A seen=()
add_module() {
	local m=$1 f dep
	[ -n "${seen[$m]:-}" ] && return 0
	f=$(find "$kmods/kernel" -name "$m.ko" -print -quit)
	if [ -z "$f" ]; then
		m=${m//_/-}
		f=$(find "$kmods/kernel" -name "$m.ko" -print -quit)
	fi
	if [ -z "$f" ]; then
		grep -q "/$m.ko\$" "$kmods/modules.builtin" && { seen[$m]=builtin; return 0; }
		log "module $m is neither in $kpkg nor built in"
		exit 1
	fi
	seen[$m]=$f
	mkdir -p "$rd/lib/modules/$uname_r/$(dirname "${f#"$kmods/"}")"
	cp "$f" "$rd/lib/modules/$uname_r/${f#"$kmods/"}"
	for dep in $("$rd/bin/busybox" strings "$f" | sed -n 's/^depends=//p' | tr ',' ' '); do
		add_module "$dep"
	done
}
for m in "${want[@]}"; do add_module "$m"; done
cp "$kmods"/modules.order "$kmods"/modules.builtin "$rd/lib/modules/$uname_r/"
"$rd/bin/busybox" depmod -b "$rd" "$uname_r"

cat >"$rd/etc/inittab" <<'EOF'
# /init has done the booting; busybox init only reaps and handles
# poweroff/reboot (SIGUSR2/SIGTERM from the applets, Ctrl-Alt-Del).
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
EOF
cat >"$rd/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
# ACPI power button (the hypervisor's graceful stop): power off at once.
# Nothing needs flushing (the root is the initramfs, the metadata drive is
# mounted read-only), and busybox init's own shutdown spends two seconds
# in sleeps.
echo "vdc-guest: ACPI power button, powering off" >/dev/console
sync
exec /sbin/poweroff -f
EOF
chmod +x "$rd/etc/acpi/PWRF/00000080"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rd/etc/passwd"
printf 'root:x:0:\n' >"$rd/etc/group"

cat >"$rd/init" <<'EOF'
#!/bin/sh
# vdc tiny guest: boot from the initramfs, configure from the metadata drive.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

modprobe -a virtio_pci virtio_blk virtio_net vfat nls_cp437 nls_ascii nls_iso8859-1 nls_utf8 button evdev ||
	echo "vdc-guest: loading modules failed"
ip link set lo up
# Listen for the power button from here on: a graceful stop sent while the
# guest is still booting is not lost.
acpid -c /etc/acpi -l /var/log/acpid.log

# The metadata drive is the disk whose vfat label is METADATA (normally vdb).
# virtio_blk registers its disks while modprobe runs; the short poll only
# covers a slow probe.
meta=/mnt/metadata
dev=""
i=0
while [ $i -lt 10 ]; do
	dev=$(findfs LABEL=METADATA 2>/dev/null) && break
	dev=""
	i=$((i + 1))
	sleep 0.1
done
if [ -z "$dev" ] || ! mount -t vfat -o ro "$dev" "$meta"; then
	echo "vdc-guest: no metadata drive"
	hostname vdc-tiny
	exec /sbin/init
fi

md() { cat "$meta/meta-data/$1" 2>/dev/null; }
iid=$(md instance-id)
host=$(md local-hostname)
[ -n "$host" ] || host=$(md hostname)
[ -n "$host" ] || host=$iid
hostname "$host"
echo "$host" >/etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$host" >/etc/hosts

# One directory per vnic MAC: configure the matching NICs.
ips=""
: >/etc/resolv.conf
for nic in /sys/class/net/*; do
	name=${nic##*/}
	[ "$name" = lo ] && continue
	# FAT cannot name a directory with ':', so the drive spells MACs with
	# '-' (aa-bb-cc-dd-ee-ff), as Wakame-vdc did.
	mac=$(tr ':' '-' <"$nic/address")
	d=$meta/meta-data/network/interfaces/macs/$mac
	[ -d "$d" ] || continue
	prefix=$(cat "$d/x-prefix" 2>/dev/null)
	mask=$(cat "$d/x-netmask" 2>/dev/null)
	bcast=$(cat "$d/x-broadcast" 2>/dev/null)
	gw=$(cat "$d/x-gateway" 2>/dev/null)
	metric=$(cat "$d/x-metric" 2>/dev/null)
	ip link set "$name" up
	for a in $(tr ',' ' ' <"$d/local-ipv4s" 2>/dev/null); do
		[ -n "$prefix" ] || prefix=$(ipcalc -s -p "$a" "$mask" | cut -d= -f2)
		if [ -n "$bcast" ]; then
			ip addr add "$a/$prefix" broadcast "$bcast" dev "$name"
		else
			ip addr add "$a/$prefix" dev "$name"
		fi
		ips=${ips:+$ips,}$a
		# Gratuitous ARP (twice, in the background): peers that knew the
		# address with another MAC (a terminated instance's, as addresses
		# are reused) update their caches now, not when those expire.
		arping -q -U -c 2 -I "$name" "$a" </dev/null >/dev/null 2>&1 &
	done
	if [ -n "$gw" ]; then
		ip route add default via "$gw" dev "$name" metric "${metric:-0}" ||
			echo "vdc-guest: default route via $gw on $name failed"
	fi
	for ns in $(tr ',' ' ' <"$d/x-dns" 2>/dev/null); do
		echo "nameserver $ns" >>/etc/resolv.conf
	done
done

printf '%s %s\n' "$iid" "$host" >/www/index.html
httpd -p 80 -h /www
nc -ll -p 7 -e /bin/cat </dev/null >/dev/null 2>&1 &
echo "vdc-guest: booted $iid hostname=$host ips=$ips"

if [ "$(head -c 2 /mnt/metadata/user-data 2>/dev/null)" = "#!" ]; then
	cp /mnt/metadata/user-data /run/user-data
	chmod +x /run/user-data
	/run/user-data </dev/null >/var/log/user-data.log 2>&1 &
fi
exec /sbin/init
EOF
chmod +x "$rd/init"

find "$rd" -exec touch -h -d "@$epoch" {} +
(cd "$rd" && find . | sort | cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9 -n >"$work/initrd.gz"

# loglevel=6 keeps the kernel's own "Linux version" line (a notice) on the
# console and drops the info chatter, which is slow to print under TCG.
cat >"$work/syslinux.cfg" <<'EOF'
SERIAL 0 115200
DEFAULT vdc
PROMPT 0
TIMEOUT 0
LABEL vdc
  LINUX /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0,115200 loglevel=6 panic=10
EOF
cp "$vmlinuz" "$work/vmlinuz"
touch -d "@$epoch" "$work/vmlinuz" "$work/initrd.gz" "$work/syslinux.cfg"

# Whole-disk FAT ("superfloppy"): SeaBIOS runs syslinux's boot sector from
# sector 0; built with mtools, nothing is mounted.
size_kib=$((($(stat -c %s "$work/vmlinuz") + $(stat -c %s "$work/initrd.gz")) / 1024 + 4096))
size_kib=$(((size_kib + 1023) / 1024 * 1024))
raw=$work/vdc-tiny.raw
SOURCE_DATE_EPOCH=$epoch mkfs.vfat -C --invariant -i 7dc0de01 -n VDCTINY "$raw" "$size_kib" >/dev/null
export MTOOLS_SKIP_CHECK=1 SOURCE_DATE_EPOCH=$epoch
syslinux --install "$raw"
mcopy -m -i "$raw" "$work/syslinux.cfg" "$work/vmlinuz" "$work/initrd.gz" ::/
md5=$(md5sum <"$raw" | cut -d' ' -f1)

mv -f "$raw" "$image"
printf '%s' "$md5" >"$image.md5"
printf '%s' "$key" >"$out/.key"
log "built $image ($(stat -c %s "$image") bytes, $kpkg $kver, busybox-static $(pkgver busybox-static)) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
echo "$image"
