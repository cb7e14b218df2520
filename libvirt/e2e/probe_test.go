//go:build e2e

package e2e

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

		By("reading an 8 MiB object from the object store inside the guest")
		js, err := jetstream.New(E.nc)
		Expect(err).NotTo(HaveOccurred())
		obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "artifacts"})
		Expect(err).NotTo(HaveOccurred())
		blob := make([]byte, 8<<20)
		for i := range blob {
			blob[i] = byte(i * 7)
		}
		_, err = obs.PutBytes(ctx, "probe/blob", blob)
		Expect(err).NotTo(HaveOccurred())
		msg, err = E.nc.Request("probe.fetch.probe-vm", []byte("probe/blob"), 5*time.Minute)
		Expect(err).NotTo(HaveOccurred())
		var n, ms int64
		_, err = fmt.Sscanf(string(msg.Data), "%d %d", &n, &ms)
		Expect(err).NotTo(HaveOccurred(), "fetch reply %q", msg.Data)
		Expect(n).To(Equal(int64(len(blob))))
		AddReportEntry("object store read of 8 MiB in the guest", fmt.Sprintf("%d ms (%.1f MiB/s)", ms, 8/(float64(ms)/1000)))

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
