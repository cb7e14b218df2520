#!/usr/bin/env bash
# Build the base of the e2e guest once per content hash and print its
# directory. The base holds:
#   rootfs/      Debian bookworm (debootstrap minbase) with systemd as PID 1,
#                dbus, udev and kmod; slow units masked; serial getty; fstab
#   vmlinuz      Debian's cloud kernel (direct kernel boot)
#   initrd.img   a tiny busybox initramfs: load the virtio modules, mount
#                /dev/vda, switch_root to /sbin/init
#   kernel.ver   the kernel release
# The agent is not in the base: libvirt/image adds it (and anything else a
# test installs) on top and writes the ext4 disk with mke2fs -d.
#
# The hash covers this script, the kernel release, busybox and the mirror,
# so editing any of them builds a new base. Cache: $FLOTILLA_CACHE/vm.
set -euo pipefail

CACHE=${FLOTILLA_CACHE:-$HOME/.cache/flotilla}/vm
SUITE=bookworm
log() { printf 'libvirt-image: %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
	log "must run as root (debootstrap and chroot need it)"
	exit 1
fi

# The Debian mirror apt already uses (deb822 .sources first, then the
# classic list).
mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -e $f ]] || continue
		awk '/^URIs:/{u=$2} /^Suites:/{ if ($0 ~ /[[:space:]]'"$SUITE"'([[:space:]]|$)/ && u ~ /debian\/?$/) {print u; exit} }' "$f"
	done | head -1
	grep -hsE '^deb\s+(\[[^]]*\]\s+)?\S+/debian/?\s+'"$SUITE"'\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
		awk '{for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' | head -1
	return 0
}
MIRROR=${FLOTILLA_DEBIAN_MIRROR:-$(set +o pipefail; mirror | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

KERNEL=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -1 || true)
if [[ -z $KERNEL ]]; then
	log "no cloud kernel in /boot; run hack/libvirt-setup.sh (installs linux-image-cloud-amd64)"
	exit 1
fi
KVER=${KERNEL#/boot/vmlinuz-}
MODDIR=/lib/modules/$KVER
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || { log "busybox-static is missing"; exit 1; }

HASH=$( { cat "$0"; echo "$KVER"; sha256sum "$BUSYBOX"; echo "$MIRROR"; } | sha256sum | cut -c1-16)
BASE=$CACHE/base-$HASH
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [[ -e $BASE/done ]]; then
	echo "$BASE"
	exit 0
fi

start=$(date +%s)
TMP=$BASE.tmp
rm -rf "$TMP"
mkdir -p "$TMP" "$CACHE/debs"
R=$TMP/rootfs
log "debootstrap $SUITE from $MIRROR (about a minute)"
debootstrap --variant=minbase --include=systemd,systemd-sysv,udev,kmod,dbus \
	--cache-dir="$CACHE/debs" "$SUITE" "$R" "$MIRROR" >"$TMP/debootstrap.log" 2>&1 || {
	tail -20 "$TMP/debootstrap.log" >&2
	log "debootstrap failed; full log: $TMP/debootstrap.log"
	exit 1
}

log "configuring the guest"
echo flotilla-vm >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tflotilla-vm\n' >"$R/etc/hosts"
# Root on the virtio disk; the per-VM configuration disk (if any) on the
# second one. No fsck at boot: ext4's journal replays at mount.
cat >"$R/etc/fstab" <<'EOF'
/dev/vda  /              ext4  rw,errors=remount-ro                      0 0
/dev/vdb  /etc/flotilla  ext4  ro,nofail,x-systemd.device-timeout=10s    0 0
EOF
mkdir -p "$R/etc/flotilla"
# A fixed machine id: no first-boot logic (systemd-firstboot would prompt
# on the console).
echo "$HASH$HASH" >"$R/etc/machine-id"
chroot "$R" passwd -d root >/dev/null
# Logs to the serial console too, so a failed run's console.log shows what
# the services said.
mkdir -p "$R/etc/systemd/journald.conf.d"
cat >"$R/etc/systemd/journald.conf.d/10-console.conf" <<'EOF'
[Journal]
ForwardToConsole=yes
TTYPath=/dev/ttyS0
MaxLevelConsole=info
EOF
systemctl --root="$R" set-default multi-user.target >/dev/null
systemctl --root="$R" enable serial-getty@ttyS0.service >/dev/null 2>&1
# Units that only cost time in a test VM (each one is seconds under TCG).
systemctl --root="$R" mask \
	apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
	fstrim.timer systemd-tmpfiles-clean.timer e2scrub_reap.service \
	systemd-pstore.service systemd-journal-flush.service remote-fs.target \
	getty@tty1.service systemd-firstboot.service systemd-hwdb-update.service \
	systemd-journal-catalog-update.service systemd-binfmt.service \
	proc-sys-fs-binfmt_misc.automount sys-kernel-debug.mount sys-kernel-tracing.mount \
	sys-kernel-config.mount sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount \
	modprobe@configfs.service modprobe@drm.service modprobe@efi_pstore.service \
	modprobe@fuse.service modprobe@loop.service modprobe@dm_mod.service \
	systemd-modules-load.service kmod-static-nodes.service ldconfig.service \
	systemd-networkd.service systemd-networkd-wait-online.service \
	systemd-timesyncd.service systemd-resolved.service systemd-logind.service \
	systemd-update-utmp.service systemd-update-utmp-runlevel.service >/dev/null 2>&1
rm -rf "$R/var/cache/apt/archives/"*.deb "$R/var/lib/apt/lists/"*

log "kernel $KVER and initramfs"
cp "$KERNEL" "$TMP/vmlinuz"
echo "$KVER" >"$TMP/kernel.ver"
I=$TMP/initramfs
mkdir -p "$I/bin" "$I/lib/modules" "$I/proc" "$I/sys" "$I/dev" "$I/newroot"
cp "$BUSYBOX" "$I/bin/busybox"
MODS="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio_console"
for m in $MODS; do
	f=$(find "$MODDIR/kernel/drivers" -name "$m.ko*" | head -1)
	[[ -n $f ]] || { log "module $m not found under $MODDIR"; exit 1; }
	case $f in
	*.ko) cp "$f" "$I/lib/modules/$m.ko" ;;
	*.ko.xz) xz -dc "$f" >"$I/lib/modules/$m.ko" ;;
	*.ko.zst) zstd -qdc "$f" >"$I/lib/modules/$m.ko" ;;
	*) log "unsupported module file $f"; exit 1 ;;
	esac
done
cat >"$I/init" <<EOF
#!/bin/busybox sh
b=/bin/busybox
\$b mount -t proc proc /proc
\$b mount -t sysfs sysfs /sys
\$b mount -t devtmpfs devtmpfs /dev
for m in $MODS; do
	\$b insmod /lib/modules/\$m.ko || echo "initramfs: insmod \$m failed"
done
i=0
while [ ! -b /dev/vda ] && [ \$i -lt 100 ]; do \$b sleep 0.1; i=\$((i+1)); done
if ! \$b mount -t ext4 -o ro /dev/vda /newroot; then
	echo "initramfs: cannot mount /dev/vda; powering off"
	\$b poweroff -f
fi
\$b umount /proc /sys
\$b mount --move /dev /newroot/dev
exec \$b switch_root /newroot /sbin/init
EOF
chmod +x "$I/init"
(cd "$I" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$TMP/initrd.img"
rm -rf "$I"

touch "$TMP/done"
rm -rf "$BASE"
mv "$TMP" "$BASE"
log "base built in $(($(date +%s) - start))s: $BASE ($(du -sh "$BASE/rootfs" | cut -f1) rootfs)"
echo "$BASE"
