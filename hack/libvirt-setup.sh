#!/usr/bin/env bash
# Prepare this machine to run the libvirt e2e suites, idempotently:
#   * install the Debian packages that are missing,
#   * start virtlogd and libvirtd when they are not running
#     (pid files under $FLOTILLA_RUN_DIR, default /run/flotilla).
# Root is required: libvirtd and QEMU run as root here.
set -euo pipefail

RUN_DIR=${FLOTILLA_RUN_DIR:-/run/flotilla}
SOCK=/var/run/libvirt/libvirt-sock
PACKAGES=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
	qemu-system-x86 qemu-utils busybox-static linux-image-cloud-amd64
	debootstrap e2fsprogs)

log() { printf 'libvirt-setup: %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
	log "must run as root (libvirtd, QEMU and debootstrap need it); try: sudo make e2e"
	exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
	if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) != installed ]]; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# A failed update (one unreachable third-party source) must not block
	# the install from Debian's own mirror.
	apt-get update -q >&2 || log "apt-get update reported errors; trying the install anyway"
	apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

if [[ ! -e /dev/kvm ]]; then
	log "no /dev/kvm: VMs run under QEMU software emulation (TCG), slower but complete"
fi

mkdir -p "$RUN_DIR"

# alive PIDFILE: the pid file names a running process.
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# A daemon started by someone else (systemd, an earlier run without our pid
# file) counts as running.
if ! alive "$RUN_DIR/virtlogd.pid" && ! pgrep -x virtlogd >/dev/null; then
	log "starting virtlogd"
	virtlogd -d -p "$RUN_DIR/virtlogd.pid"
fi

libvirtd_up() { timeout 20 virsh -c qemu:///system -q version >/dev/null 2>&1; }
if ! alive "$RUN_DIR/libvirtd.pid" && ! pgrep -x libvirtd >/dev/null; then
	log "starting libvirtd"
	libvirtd -d -p "$RUN_DIR/libvirtd.pid"
	for _ in $(seq 1 100); do
		[[ -S $SOCK ]] && break
		sleep 0.1
	done
fi
# The first call probes QEMU's capabilities (about 5 s); pay it here.
for _ in $(seq 1 30); do
	libvirtd_up && break
	sleep 1
done
if ! libvirtd_up; then
	log "libvirtd does not answer on $SOCK; see its log (journal or /var/log/libvirt/libvirtd.log)"
	exit 1
fi
log "libvirtd ready on $SOCK"
