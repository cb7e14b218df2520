//go:build e2e

package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/flotilla-fleet/flotilla/libvirt/image"
)

const probeUnit = `[Unit]
Description=flotilla e2e guest probe (NATS over virtio-serial)

[Service]
ExecStart=/usr/local/bin/guestprobe
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
`

var _ = Describe("The VM path", Label("probe"), func() {
	It("carries a systemd service's NATS traffic over virtio-serial, through a power cut", func(ctx SpecContext) {
		bin := E.goBuild(ctx, "guestprobe", "./libvirt/guestprobe")
		disk, err := image.Build(ctx, E.base, image.Payload{
			Files: []image.File{
				{Path: "/usr/local/bin/guestprobe", Mode: 0o755, Src: bin},
				{Path: "/etc/systemd/system/flotilla-probe.service", Data: []byte(probeUnit)},
				{Path: "/etc/hostname", Data: []byte("probe-vm\n")},
			},
			Enable: []string{"flotilla-probe.service"},
		})
		Expect(err).NotTo(HaveOccurred())

		hello, err := E.nc.SubscribeSync("probe.hello.probe-vm")
		Expect(err).NotTo(HaveOccurred())
		defer hello.Unsubscribe()
		start := time.Now()
		vm := E.boot(ctx, "probe", disk, nil)
		_, err = hello.NextMsg(bootTimeout)
		Expect(err).NotTo(HaveOccurred(), "no hello from the guest within %v", bootTimeout)
		AddReportEntry("boot to first NATS message", time.Since(start).Round(time.Millisecond))
		msg, err := E.nc.Request("probe.ping.probe-vm", []byte("ping"), 5*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(msg.Data)).To(HavePrefix("pong probe-vm"))

		Expect(vm.Destroy(ctx)).To(Succeed())
		for { // drain what arrived before the cut
			if _, err := hello.NextMsg(100 * time.Millisecond); err != nil {
				break
			}
		}
		start = time.Now()
		Expect(vm.Start(ctx)).To(Succeed())
		_, err = hello.NextMsg(bootTimeout)
		Expect(err).NotTo(HaveOccurred(), "no hello after destroy + start")
		AddReportEntry("restart after power cut to first NATS message", time.Since(start).Round(time.Millisecond))

		Expect(vm.Reset(ctx)).To(Succeed())
		for {
			if _, err := hello.NextMsg(100 * time.Millisecond); err != nil {
				break
			}
		}
		start = time.Now()
		Eventually(func() error { _, err := hello.NextMsg(time.Second); return err }).WithTimeout(bootTimeout).
			Should(Succeed(), "no hello after reset")
		AddReportEntry("reset to first NATS message", time.Since(start).Round(time.Millisecond))
	}, SpecTimeout(3*bootTimeout))
})
