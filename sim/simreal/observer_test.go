//go:build simreal

package simreal

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nats-io/nats.go"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/internal/agenttest"
	"github.com/flotilla-fleet/flotilla/internal/natstest"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/sim/check"
)

// The observer is the real run's only witness: these specs put on the wire
// what a broken operator or agent would, and expect the checker to see it.
var _ = Describe("the wire observer", func() {
	var (
		nc  *nats.Conn
		obs *observer
	)
	v1, v2 := core.MustParseVersion("v1.0.0"), core.MustParseVersion("v2.0.0")
	BeforeEach(func() {
		srv := natstest.StartRestartable(GinkgoT())
		var err error
		obs, err = newObserver(srv.URL(), check.New())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(obs.close)
		nc, err = nats.Connect(srv.URL())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(nc.Close)
		obs.deviceSeen("dev-0", map[string]string{"site": "a"})
		obs.deviceSeen("dev-1", map[string]string{"site": "a"})
	})
	put := func(bucket, key string, v interface{ Encode() ([]byte, error) }) {
		GinkgoHelper()
		b, err := v.Encode()
		Expect(err).NotTo(HaveOccurred())
		Expect(nc.Publish("$KV."+bucket+"."+key, b)).To(Succeed())
		Expect(nc.Flush()).To(Succeed())
	}
	stop := func(dev string, attempt uint32) {
		GinkgoHelper()
		b, err := core.CommandRequest{Verb: core.VerbUpgradeStop, ID: "s1",
			UpgradeStop: &core.UpgradeStopArgs{Attempt: attempt, TargetVersion: v2}}.Encode()
		Expect(err).NotTo(HaveOccurred())
		Expect(nc.Publish(core.CommandSubject(dev, core.VerbUpgradeStop), b)).To(Succeed())
		Expect(nc.Flush()).To(Succeed())
	}
	invariants := func() []int {
		var out []int
		for _, v := range obs.violations() {
			out = append(out, v.Invariant)
		}
		return out
	}

	It("flags an upgrade-stop sent before a heartbeat of the new version", func() {
		put(core.BucketDeviceHeartbeat, "dev-0", core.Heartbeat{Schema: 1, AgentVersion: v1, Seq: 1})
		stop("dev-0", 1)
		Eventually(invariants).Should(ContainElement(check.InvStopAfterHB))
	})

	It("accepts an upgrade-stop after the candidate's heartbeat, on the wire in that order", func() {
		put(core.BucketDeviceHeartbeat, "dev-0", core.Heartbeat{Schema: 1, AgentVersion: v2, Seq: 1, Attempt: 1})
		stop("dev-0", 1)
		Eventually(func() int { return obs.counts()["upgrade-stop"] }).Should(Equal(1))
		Consistently(invariants, 300*time.Millisecond).Should(BeEmpty())
	})

	It("flags an agent that exits without an armed, answered upgrade-stop", func() {
		obs.agentExited("dev-0", "exit status 0")
		Expect(invariants()).To(ContainElement(check.InvNoSelfStop))
	})

	It("flags a device whose current link points at a binary that does not match its recorded SHA-256", func() {
		d, err := agenttest.NewDevice(GinkgoT().TempDir(), agenttest.DeviceConfig{Name: "dev-0", NATSURL: "nats://127.0.0.1:1"})
		Expect(err).NotTo(HaveOccurred())
		put(core.BucketDeviceHeartbeat, "dev-0", core.Heartbeat{Schema: 1, AgentVersion: v1, Seq: 1})
		Eventually(func() int { return obs.counts()["heartbeat"] }).Should(Equal(1))
		var sums agenttest.SumCache
		obs.checkDisk("dev-0", diskOf(d, &sums))
		Expect(invariants()).To(Equal([]int{check.InvDisk}), "no current link")

		vdir := filepath.Join(d.DataDir, "versions", "v1.0.0")
		Expect(os.MkdirAll(vdir, 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(vdir, "flotilla-agent"), []byte("torn"), 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(vdir, "flotilla-agent.sha256"), []byte(strings.Repeat("0", 64)), 0o644)).To(Succeed())
		Expect(os.Symlink(vdir, filepath.Join(d.DataDir, "current"))).To(Succeed())
		v, ok := d.CurrentLink()
		Expect(ok).To(BeTrue())
		Expect(v.String()).To(Equal("v1.0.0"))
		obs.checkDisk("dev-0", diskOf(d, &sums))
		Expect(invariants()).To(Equal([]int{check.InvDisk, check.InvDisk}), "current binary does not match its SHA-256")
	})

	It("flags more devices in flight than maxUnavailable", func() {
		obs.rolloutSeen(opcore.AgentRolloutSpec{Name: "r", Version: v2,
			Rollout: opcore.Strategy{MaxUnavailable: opcore.Amount{Value: 1}}})
		for i, dev := range []string{"dev-0", "dev-1"} {
			put(core.BucketAgentUpgrade, dev, core.UpgradeMarker{Schema: 1, Attempt: uint32(i + 1), Rollout: "r",
				TargetVersion: v2, Artifact: core.ArtifactRef{Object: core.ArtifactObjectName("flotilla-agent", "v2.0.0"), SHA256: strings.Repeat("0", 64), Size: 1}, CutoverTimeoutSec: 10})
		}
		Eventually(invariants).Should(ContainElement(check.InvRollout))
	})
})
