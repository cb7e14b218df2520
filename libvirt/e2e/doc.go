// Package e2e boots real VMs under libvirt/QEMU (software emulation), each
// with systemd as PID 1 and the flotilla agent installed as a systemd
// service, connected to an embedded nats-server over virtio-serial, and
// drives agent self-upgrades vX → vX+1 → rollback end to end through the
// operator. The suites carry the build tag e2e; run them with `make e2e`
// (root; installs and starts what it needs). See docs/libvirt.md.
package e2e
