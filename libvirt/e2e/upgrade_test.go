//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/flotilla-fleet/flotilla/core"
)

// Generous bounds: VMs run under software emulation on a shared 2-core
// machine; a warm, idle machine needs a fraction of them.
const (
	bootTimeout    = 6 * time.Minute
	upgradeTimeout = 6 * time.Minute
	poll           = 500 * time.Millisecond
)

var _ = Describe("Agent self-upgrade on real VMs", Ordered, Label("upgrade"), func() {
	var f *fleet
	fleetLabels := map[string]string{"fleet": "e2e"}

	BeforeAll(func(ctx SpecContext) {
		f = newFleet(ctx, "vm-a", "vm-b")
		By("booting vm-a and vm-b with agent v1")
		t0 := time.Now()
		f.bootAll(ctx)
		for _, dev := range f.names {
			Eventually(ctx, f.heartbeatVersion(ctx, dev)).WithTimeout(bootTimeout).WithPolling(poll).
				Should(Equal("v1.0.0"), "%s never heartbeated v1", dev)
			Eventually(func() bool { _, ok := f.store.Device(dev); return ok }).WithTimeout(time.Minute).
				Should(BeTrue(), "the operator did not register Device %s", dev)
		}
		AddReportEntry("boot both VMs to v1 heartbeats", time.Since(t0).Round(time.Millisecond))
	}, NodeTimeout(25*time.Minute))

	// expectSettled checks a device from inside: current points at want and
	// exactly one agent, of that version, runs.
	expectSettled := func(ctx context.Context, dev, want string) {
		Eventually(ctx, func() (diskState, error) { return f.diskState(ctx, dev) }).
			WithTimeout(2*time.Minute).WithPolling(2*time.Second).
			Should(Equal(diskState{Current: want, Running: []string{want}}),
				"%s: current link and running agents", dev)
	}

	It("1. upgrades both VMs from v1 to v2 through an AgentRollout; v1 exits on upgrade-stop", func(ctx SpecContext) {
		f.rollout("v2.0.0", fleetLabels)
		for _, dev := range f.names {
			Eventually(ctx, func() string { return f.device(dev).CurrentVersion.String() }).
				WithTimeout(upgradeTimeout).WithPolling(poll).
				Should(Equal("v2.0.0"), func() string { return f.describe(ctx, dev) })
			// The operator records currentVersion on the old agent's reply to
			// upgrade-stop; the new agent writes Committed once it has read
			// the commit in the journal, a moment later.
			Eventually(ctx, f.heartbeatVersion(ctx, dev)).WithTimeout(time.Minute).WithPolling(poll).
				Should(Equal("v2.0.0"))
			Eventually(ctx, func() (core.UpgradeStatus, error) { return f.upgradeStatus(ctx, dev) }).
				WithTimeout(time.Minute).WithPolling(poll).
				Should(HaveField("Phase", core.UpgradeCommitted), func() string { return f.describe(ctx, dev) })
			st, err := f.upgradeStatus(ctx, dev)
			Expect(err).NotTo(HaveOccurred())
			Expect(f.device(dev).Upgrade.StopSentAttempt).To(Equal(st.Attempt),
				"the operator sent upgrade-stop for the committed attempt")
		}
		Eventually(func() int { return f.rolloutStatus().Counts.Succeeded }).WithTimeout(time.Minute).
			Should(Equal(2), func() string { return fmt.Sprintf("%+v", f.rolloutStatus()) })
		for _, dev := range f.names {
			expectSettled(ctx, dev, "v2.0.0")
		}
	}, SpecTimeout(15*time.Minute))

	It("2. keeps both VMs on v2 when v3 fails its self-test, reporting Failed with the reason", func(ctx SpecContext) {
		f.rollout("v3.0.0", fleetLabels)
		for _, dev := range f.names {
			Eventually(ctx, func() (core.UpgradeStatus, error) { return f.upgradeStatus(ctx, dev) }).
				WithTimeout(upgradeTimeout).WithPolling(poll).
				Should(SatisfyAll(
					HaveField("TargetVersion", HaveField("String()", "v3.0.0")),
					HaveField("Phase", core.UpgradeFailed),
					HaveField("Reason", core.ReasonSelfTestFailed)),
					func() string { return f.describe(ctx, dev) })
			Eventually(func() string { return string(f.device(dev).Upgrade.Phase) }).WithTimeout(time.Minute).
				Should(Equal(string(core.UpgradeFailed)), func() string { return f.describe(ctx, dev) })
			Expect(f.device(dev).Upgrade.Message).To(ContainSubstring(string(core.ReasonSelfTestFailed)))
			Expect(f.device(dev).CurrentVersion.String()).To(Equal("v2.0.0"))
			Expect(f.heartbeatVersion(ctx, dev)()).To(Equal("v2.0.0"))
		}
		Eventually(func() int { return f.rolloutStatus().Counts.Failed }).WithTimeout(time.Minute).
			Should(Equal(2), func() string { return fmt.Sprintf("%+v", f.rolloutStatus()) })
		for _, dev := range f.names {
			expectSettled(ctx, dev, "v2.0.0")
		}
	}, SpecTimeout(15*time.Minute))

	It("3. rolls back to v2 automatically when v4 crashes after cutover, reported as RolledBack", func(ctx SpecContext) {
		f.rollout("v4.0.0", fleetLabels)
		for _, dev := range f.names {
			Eventually(ctx, func() (core.UpgradeStatus, error) { return f.upgradeStatus(ctx, dev) }).
				WithTimeout(upgradeTimeout+cutoverTimeout*time.Second).WithPolling(poll).
				Should(SatisfyAll(
					HaveField("TargetVersion", HaveField("String()", "v4.0.0")),
					HaveField("Phase", core.UpgradeRolledBack)),
					func() string { return f.describe(ctx, dev) })
			Eventually(func() string { return string(f.device(dev).Upgrade.Phase) }).WithTimeout(time.Minute).
				Should(Equal(string(core.UpgradeRolledBack)), func() string { return f.describe(ctx, dev) })
			Expect(f.device(dev).CurrentVersion.String()).To(Equal("v2.0.0"))
			Expect(f.heartbeatVersion(ctx, dev)()).To(Equal("v2.0.0"))
		}
		for _, dev := range f.names {
			expectSettled(ctx, dev, "v2.0.0")
		}
	}, SpecTimeout(15*time.Minute))

	It("5. still runs v2 after a reboot that follows the committed upgrade", func(ctx SpecContext) {
		boots := map[string]string{}
		for _, dev := range f.names {
			boots[dev] = f.bootID(ctx, dev)
		}
		var wg sync.WaitGroup
		for _, dev := range f.names {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				Expect(f.vms[dev].Reboot(ctx)).To(Succeed())
			}()
		}
		wg.Wait()
		for _, dev := range f.names {
			Eventually(ctx, func() string { return f.bootID(ctx, dev) }).WithTimeout(bootTimeout).WithPolling(poll).
				ShouldNot(Equal(boots[dev]), "%s: no device-info from a new boot", dev)
			Eventually(ctx, f.heartbeatVersion(ctx, dev)).WithTimeout(time.Minute).WithPolling(poll).
				Should(Equal("v2.0.0"))
			Expect(f.device(dev).CurrentVersion.String()).To(Equal("v2.0.0"))
		}
		for _, dev := range f.names {
			expectSettled(ctx, dev, "v2.0.0")
		}
	}, SpecTimeout(15*time.Minute))

	It("4. comes back on a verified version after a power cut during cutover, and the rollout converges", func(ctx SpecContext) {
		const dev = "vm-b"
		vm := f.vms[dev]
		f.rollout("v5.0.0", map[string]string{"vm": dev})

		By("holding the operator once the cutover starts, so the upgrade-stop cannot race the power cut")
		inCutover := func(st core.UpgradeStatus) bool {
			return st.TargetVersion != nil && st.TargetVersion.String() == "v5.0.0" &&
				(st.Phase == core.UpgradeCutoverReady || st.Phase == core.UpgradeWaitingForStop)
		}
		Eventually(ctx, func() bool { st, err := f.upgradeStatus(ctx, dev); return err == nil && inCutover(st) }).
			WithTimeout(upgradeTimeout).WithPolling(50*time.Millisecond).
			Should(BeTrue(), func() string { return f.describe(ctx, dev) })
		f.stopOperator()
		Eventually(ctx, func() (core.UpgradeStatus, error) { return f.upgradeStatus(ctx, dev) }).
			WithTimeout(2*time.Minute).WithPolling(50*time.Millisecond).
			Should(HaveField("Phase", core.UpgradeWaitingForStop), func() string { return f.describe(ctx, dev) })

		By("cutting the power (DomainDestroy) while the old agent waits for upgrade-stop")
		Expect(vm.Destroy(ctx)).To(Succeed())
		f.startOperator()
		Expect(vm.Start(ctx)).To(Succeed())

		By("waiting for the device to come back and the rollout to converge")
		settled := func() error {
			h, err := f.heartbeat(ctx, dev)
			if err != nil {
				return err
			}
			st, err := f.upgradeStatus(ctx, dev)
			if err != nil {
				return err
			}
			if !st.Phase.Terminal() {
				return fmt.Errorf("upgrade status %v not terminal", st)
			}
			if v := h.AgentVersion.String(); v != "v2.0.0" && v != "v5.0.0" {
				return fmt.Errorf("runs %s, neither the committed v2 nor the verified v5", v)
			}
			if h.Attempt != 0 {
				return fmt.Errorf("heartbeat from a candidate process (attempt %d)", h.Attempt)
			}
			if cur := f.device(dev).CurrentVersion; cur.String() != h.AgentVersion.String() {
				return fmt.Errorf("Device currentVersion %s, device heartbeats %s", cur, h.AgentVersion)
			}
			c := f.rolloutStatus().Counts
			if c.Total != 1 || c.InProgress != 0 || c.Waiting != 0 {
				return fmt.Errorf("rollout counts %+v", c)
			}
			return nil
		}
		Eventually(ctx, settled).WithTimeout(bootTimeout+upgradeTimeout).WithPolling(time.Second).
			Should(Succeed(), func() string { return f.describe(ctx, dev) })
		h, _ := f.heartbeat(ctx, dev)
		st, _ := f.upgradeStatus(ctx, dev)
		AddReportEntry("power cut outcome", fmt.Sprintf("%s runs %s; upgrade status %v", dev, h.AgentVersion, st))
		expectSettled(ctx, dev, h.AgentVersion.String())
		Expect(f.heartbeatVersion(ctx, "vm-a")()).To(Equal("v2.0.0"), "vm-a is not targeted by the v5 rollout")
	}, SpecTimeout(20*time.Minute))
})

// bootID is the boot id in the device's device-info, "" if none.
func (f *fleet) bootID(ctx context.Context, dev string) string {
	e, err := f.info.Get(ctx, core.DeviceInfoKey(dev))
	if err != nil {
		return ""
	}
	info, err := core.DecodeDeviceInfo(e.Value())
	if err != nil {
		return "bad device-info: " + strings.TrimSpace(err.Error())
	}
	return info.BootID
}
