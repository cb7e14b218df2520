//go:build e2e

// Package e2e boots real VMs under libvirt/QEMU (software emulation), each
// with systemd as PID 1 and the flotilla agent installed as a systemd
// service, connected to an embedded nats-server over virtio-serial, and
// drives agent self-upgrades vX → vX+1 → rollback end to end.
//
// Run with `make e2e` (root; installs and starts what it needs).
package e2e

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "libvirt e2e")
}

var _ = BeforeSuite(func(ctx context.Context) {
	E = setupEnv(ctx)
}, NodeTimeout(15*60e9))
