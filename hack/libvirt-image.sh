#!/usr/bin/env bash
# Build the base of the e2e guest, once per content hash, and print where
# it is (KEY=VALUE lines on stdout):
#   ROOTFS  Debian bookworm (debootstrap minbase) with systemd as PID 1, dbus,
#           udev and kmod; slow units masked; serial getty; fstab
#   KERNEL  Debian's cloud kernel (direct kernel boot)
#   INITRD  a tiny busybox initramfs: load the virtio modules, mount /dev/vda
#           (root) and /dev/vdb (the VM's provisioning data, at
#           /etc/flotilla), switch_root to /sbin/init
#   HASH    the content hash of the two parts together
# The agent is not in the base: libvirt/image adds it (and whatever else a
# test installs) on top and writes the ext4 disk with mke2fs -d.
#
# Two caches under $FLOTILLA_CACHE/vm, each keyed by the hash of the
# function that builds it and of its inputs, so that changing the
# initramfs does not redo the debootstrap:
#   rootfs-<hash>/  build_rootfs + mirror + suite
#   boot-<hash>/    build_boot + kernel release + busybox
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
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || { log "busybox-static is missing; run hack/libvirt-setup.sh"; exit 1; }

# build_rootfs DIR: debootstrap and configure the guest's root filesystem.
build_rootfs() {
	local R=$1/rootfs
	log "debootstrap $SUITE from $MIRROR (a minute on an idle machine)"
	mkdir -p "$CACHE/debs"
	debootstrap --variant=minbase --include=systemd,systemd-sysv,udev,kmod,dbus \
		--cache-dir="$CACHE/debs" "$SUITE" "$R" "$MIRROR" >"$1/debootstrap.log" 2>&1 || {
		tail -20 "$1/debootstrap.log" >&2
		log "debootstrap failed; full log: $1/debootstrap.log"
		return 1
	}
	log "configuring the guest"
	echo flotilla-vm >"$R/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\tflotilla-vm\n' >"$R/etc/hosts"
	# Root on the virtio disk. No fsck at boot: ext4's journal replays at
	# mount. /etc/flotilla (the VM's provisioning data on /dev/vdb) is
	# mounted by the initramfs, so boot never waits for udev to see vdb.
	printf '/dev/vda  /  ext4  rw,errors=remount-ro  0 0\n' >"$R/etc/fstab"
	mkdir -p "$R/etc/flotilla"
	# A fixed machine id: no first-boot logic (systemd-firstboot would
	# prompt on the console).
	echo "0123456789abcdef0123456789abcdef" >"$R/etc/machine-id"
	chroot "$R" passwd -d root >/dev/null
	# Service logs go to the serial console too, so a failed run's
	# console.log shows what the agent said.
	mkdir -p "$R/etc/systemd/journald.conf.d"
	cat >"$R/etc/systemd/journald.conf.d/10-console.conf" <<-'EOF'
		[Journal]
		ForwardToConsole=yes
		TTYPath=/dev/ttyS0
		MaxLevelConsole=info
	EOF
	systemctl --root="$R" set-default multi-user.target >/dev/null 2>&1
	systemctl --root="$R" enable serial-getty@ttyS0.service >/dev/null 2>&1
	# Units that only cost time in a test VM (each one is seconds under TCG).
	# systemd-logind stays: it turns the ACPI power button into a clean
	# poweroff (virsh shutdown, the runner's Shutdown and Reboot).
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
		systemd-timesyncd.service systemd-resolved.service \
		systemd-update-utmp.service systemd-update-utmp-runlevel.service >/dev/null 2>&1
	rm -rf "$R/var/cache/apt/archives/"*.deb "$R/var/lib/apt/lists/"*
}

# build_boot DIR: the kernel and the initramfs.
build_boot() {
	local I=$1/initramfs m f
	local MODS="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio_console evdev button"
	log "kernel $KVER and initramfs"
	cp "$KERNEL" "$1/vmlinuz"
	mkdir -p "$I/bin" "$I/lib/modules" "$I/proc" "$I/sys" "$I/dev" "$I/newroot"
	cp "$BUSYBOX" "$I/bin/busybox"
	for m in $MODS; do
		f=$(find "/lib/modules/$KVER/kernel/drivers" -name "$m.ko*" | head -1)
		[[ -n $f ]] || { log "module $m not found under /lib/modules/$KVER"; return 1; }
		case $f in
		*.ko) cp "$f" "$I/lib/modules/$m.ko" ;;
		*.ko.xz) xz -dc "$f" >"$I/lib/modules/$m.ko" ;;
		*.ko.zst) zstd -qdc "$f" >"$I/lib/modules/$m.ko" ;;
		*) log "unsupported module file $f"; return 1 ;;
		esac
	done
	cat >"$I/init" <<-EOF
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
		if [ -b /dev/vdb ]; then
			\$b mount -t ext4 -o ro /dev/vdb /newroot/etc/flotilla || echo "initramfs: cannot mount /dev/vdb at /etc/flotilla"
		fi
		\$b umount /proc /sys
		\$b mount --move /dev /newroot/dev
		exec \$b switch_root /newroot /sbin/init
	EOF
	chmod +x "$I/init"
	(cd "$I" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$1/initrd.img"
	rm -rf "$I"
}

# cached NAME HASH FUNC: run FUNC into $CACHE/NAME-HASH unless it is there;
# print the directory.
cached() {
	local dir=$CACHE/$1-$2 start
	if [[ ! -e $dir/done ]]; then
		start=$(date +%s)
		rm -rf "$dir.tmp"
		mkdir -p "$dir.tmp"
		"$3" "$dir.tmp" >&2
		touch "$dir.tmp/done"
		rm -rf "$dir"
		mv "$dir.tmp" "$dir"
		log "$1 built in $(($(date +%s) - start))s: $dir"
		# Older builds of the same kind are no longer used.
		for old in "$CACHE/$1"-*; do
			[[ $old == "$dir" || $old == *.tmp ]] || rm -rf "$old"
		done
	fi
	echo "$dir"
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
ROOT_HASH=$( { declare -f build_rootfs; echo "$SUITE $MIRROR"; } | sha256sum | cut -c1-16)
BOOT_HASH=$( { declare -f build_boot; echo "$KVER"; sha256sum <"$BUSYBOX"; } | sha256sum | cut -c1-16)
rootfs=$(cached rootfs "$ROOT_HASH" build_rootfs)
boot=$(cached boot "$BOOT_HASH" build_boot)
echo "ROOTFS=$rootfs/rootfs"
echo "KERNEL=$boot/vmlinuz"
echo "INITRD=$boot/initrd.img"
echo "HASH=$ROOT_HASH-$BOOT_HASH"
