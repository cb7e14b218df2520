//go:build envtest

package controller_test

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-fleet/flotilla/core"
	fleet "github.com/flotilla-fleet/flotilla/operator/api/v1alpha1"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

const sha = "4f1c8e4b9a0d2f6e3b7c5a1d9e8f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f"

func keys(bucket string) []string {
	ks, err := buckets[bucket].Keys(suiteCtx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	Expect(err).NotTo(HaveOccurred())
	sort.Strings(ks)
	return ks
}

// desiredFor lists the desired-state keys of one deployment.
func desiredFor(dep string) func() []string {
	return func() []string {
		var out []string
		for _, k := range keys(core.BucketDesiredState) {
			if strings.HasSuffix(k, "."+dep) {
				out = append(out, k)
			}
		}
		return out
	}
}

func mkDevice(ns, name string, labels map[string]string) *fleet.Device {
	d := &fleet.Device{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
	Expect(k8s.Create(suiteCtx, d)).To(Succeed())
	return d
}

func mkDeployment(ns, name string, sel map[string]string, rollout fleet.RolloutStrategy) *fleet.Deployment {
	d := &fleet.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: fleet.DeploymentSpec{TargetSelector: fleet.LabelSelector{MatchLabels: fleet.MatchLabelsOf(sel)},
			Workload: fleet.WorkloadTemplate{Name: "web", Version: "1.0", Runtime: "process"}, Rollout: rollout}}
	Expect(k8s.Create(suiteCtx, d)).To(Succeed())
	return d
}

func get[T client.Object](ns, name string, obj T) T {
	Expect(k8s.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, obj)).To(Succeed())
	return obj
}

func update[T client.Object](ns, name string, obj T, f func(T)) {
	Eventually(func() error {
		if err := k8s.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, obj); err != nil {
			return err
		}
		f(obj)
		return k8s.Update(suiteCtx, obj)
	}).Should(Succeed())
}

func condStatus(conds []metav1.Condition, typ string) string {
	c := apimeta.FindStatusCondition(conds, typ)
	if c == nil {
		return ""
	}
	return string(c.Status) + "/" + c.Reason
}

func putState(dev, dep string, gen int64, phase core.WorkloadPhase, msg string) {
	b, err := core.DeviceState{Device: dev, Deployment: dep, Generation: gen, Phase: phase,
		LastEventAt: time.Now().UnixMilli(), LastError: msg}.Encode()
	Expect(err).NotTo(HaveOccurred())
	_, err = buckets[core.BucketDeviceState].Put(suiteCtx, core.DeviceStateKey(dev, dep), b)
	Expect(err).NotTo(HaveOccurred())
}

// Contract: every value the operator wrote decodes with core/ decoders.
var _ = AfterEach(func() {
	for _, k := range keys(core.BucketDesiredState) {
		e, err := buckets[core.BucketDesiredState].Get(suiteCtx, k)
		if err != nil {
			continue // deleted meanwhile
		}
		_, err = core.DecodeWorkloadSpec(e.Value())
		Expect(err).NotTo(HaveOccurred(), "desired-state %s does not decode", k)
		_, _, err = core.ParseDesiredStateKey(k)
		Expect(err).NotTo(HaveOccurred())
	}
	for _, k := range keys(core.BucketAgentUpgrade) {
		e, err := buckets[core.BucketAgentUpgrade].Get(suiteCtx, k)
		if err != nil {
			continue
		}
		_, err = core.DecodeUpgradeMarker(e.Value())
		Expect(err).NotTo(HaveOccurred(), "agent-upgrade %s does not decode", k)
	}
})

var _ = Describe("Deployments", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		startOperator(ns, opcore.Config{})
	})

	It("writes desired-state keys for matching devices only, byte-identical to core.WorkloadSpec", func() {
		a, b, c := ns+"-a", ns+"-b", ns+"-c"
		mkDevice(ns, a, map[string]string{"site": "north"})
		mkDevice(ns, b, map[string]string{"site": "south"})
		mkDevice(ns, c, map[string]string{"site": "north"})
		d := mkDeployment(ns, "web", map[string]string{"site": "north"}, fleet.RolloutStrategy{})
		Eventually(desiredFor("web")).Should(Equal([]string{a + ".web", c + ".web"}))
		Consistently(desiredFor("web"), "1s").Should(Equal([]string{a + ".web", c + ".web"}))
		e, err := buckets[core.BucketDesiredState].Get(suiteCtx, a+".web")
		Expect(err).NotTo(HaveOccurred())
		want, _ := core.WorkloadSpec{Deployment: "web", Generation: get(ns, "web", d).Generation, Name: "web",
			Version: "1.0", Runtime: core.RuntimeProcess}.Encode()
		Expect(string(e.Value())).To(Equal(string(want)))
		Expect(get(ns, "web", &fleet.Deployment{}).Finalizers).To(ContainElement(fleet.DeploymentFinalizer))
	})

	It("moves keys when device labels change", func() {
		a, b := ns+"-a", ns+"-b"
		mkDevice(ns, a, map[string]string{"ring": "canary"})
		mkDevice(ns, b, map[string]string{"ring": "main"})
		mkDeployment(ns, "agent-probe", map[string]string{"ring": "canary"}, fleet.RolloutStrategy{})
		Eventually(desiredFor("agent-probe")).Should(Equal([]string{a + ".agent-probe"}))
		update(ns, a, &fleet.Device{}, func(d *fleet.Device) { d.Labels["ring"] = "main" })
		update(ns, b, &fleet.Device{}, func(d *fleet.Device) { d.Labels["ring"] = "canary" })
		Eventually(desiredFor("agent-probe")).Should(Equal([]string{b + ".agent-probe"}))
	})

	It("removes keys of a blacklisted device and writes none for it", func() {
		a, b := ns+"-a", ns+"-b"
		mkDevice(ns, a, map[string]string{"app": "x"})
		mkDevice(ns, b, map[string]string{"app": "x"})
		mkDeployment(ns, "x1", map[string]string{"app": "x"}, fleet.RolloutStrategy{})
		Eventually(desiredFor("x1")).Should(HaveLen(2))
		update(ns, a, &fleet.Device{}, func(d *fleet.Device) { d.Spec.Blacklisted = true })
		Eventually(desiredFor("x1")).Should(Equal([]string{b + ".x1"}))
		mkDeployment(ns, "x2", map[string]string{"app": "x"}, fleet.RolloutStrategy{})
		Eventually(desiredFor("x2")).Should(Equal([]string{b + ".x2"}))
		Consistently(desiredFor("x2"), "1s").Should(Equal([]string{b + ".x2"}))
		Eventually(func() string {
			return condStatus(get(ns, a, &fleet.Device{}).Status.Conditions, "Blacklisted")
		}).Should(Equal("True/Blacklisted"))
	})

	It("purges every key of a deleted Deployment and then releases its finalizer", func() {
		a, b := ns+"-a", ns+"-b"
		mkDevice(ns, a, nil)
		mkDevice(ns, b, nil)
		d := mkDeployment(ns, "gone", nil, fleet.RolloutStrategy{})
		Eventually(desiredFor("gone")).Should(HaveLen(2))
		Expect(k8s.Delete(suiteCtx, d)).To(Succeed())
		Eventually(desiredFor("gone")).Should(BeEmpty())
		Eventually(func() bool {
			err := k8s.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: "gone"}, &fleet.Deployment{})
			return client.IgnoreNotFound(err) == nil && err != nil
		}).Should(BeTrue(), "the Deployment was not released")
	})

	It("shows device-state reports as counts and conditions", func() {
		devs := []string{ns + "-a", ns + "-b", ns + "-c", ns + "-d"}
		for _, d := range devs {
			mkDevice(ns, d, map[string]string{"app": "web"})
		}
		d := mkDeployment(ns, "web", map[string]string{"app": "web"}, fleet.RolloutStrategy{})
		Eventually(desiredFor("web")).Should(HaveLen(4))
		gen := get(ns, "web", d).Generation
		putState(devs[0], "web", gen, core.PhaseRunning, "")
		putState(devs[1], "web", gen, core.PhaseFailed, "exit status 2")
		putState(devs[2], "web", gen, core.PhaseApplying, "")
		Eventually(func() fleet.DeploymentCounts {
			return get(ns, "web", &fleet.Deployment{}).Status.Counts
		}).Should(Equal(fleet.DeploymentCounts{Total: 4, Succeeded: 1, Failed: 1, Pending: 1, Unreported: 1}))
		got := get(ns, "web", &fleet.Deployment{})
		Expect(got.Status.ObservedGeneration).To(Equal(gen))
		Expect(got.Status.LastError).To(Equal(devs[1] + ": exit status 2"))
		Expect(condStatus(got.Status.Conditions, "Degraded")).To(Equal("True/DevicesFailed"))
		Expect(condStatus(got.Status.Conditions, "Available")).To(Equal("False/DevicesNotReady"))
		Expect(condStatus(got.Status.Conditions, "Progressing")).To(Equal("True/RolloutInProgress"))
		Eventually(func() []string {
			var evs eventsv1.EventList
			Expect(k8s.List(suiteCtx, &evs, client.InNamespace(ns))).To(Succeed())
			var out []string
			for _, e := range evs.Items {
				if e.Regarding.Kind == "Deployment" && e.Regarding.Name == "web" {
					out = append(out, e.Type+"/"+e.Reason)
				}
			}
			return out
		}).Should(ContainElements("Warning/DeviceFailed", "Warning/DevicesFailed"), "Kubernetes Events for the failure")
		for _, dv := range devs {
			putState(dv, "web", gen, core.PhaseRunning, "")
		}
		Eventually(func() []string {
			c := get(ns, "web", &fleet.Deployment{}).Status.Conditions
			return []string{condStatus(c, "Available"), condStatus(c, "Degraded"), condStatus(c, "Progressing")}
		}).Should(Equal([]string{"True/AllDevicesRunning", "False/NoFailures", "False/RolloutComplete"}))
		Eventually(func() []fleet.DeviceDeploymentPhase {
			return get(ns, devs[0], &fleet.Device{}).Status.Deployments
		}).Should(Equal([]fleet.DeviceDeploymentPhase{{Deployment: "web", Phase: "Running", Generation: gen}}))
	})

	It("creates a Device for a device that reports device-info, with its labels", func() {
		dev := ns + "-new"
		b, err := core.DeviceInfo{Device: dev, Labels: map[string]string{"site": "east"},
			AgentVersion: core.MustParseVersion("v1.0.0")}.Encode()
		Expect(err).NotTo(HaveOccurred())
		_, err = buckets[core.BucketDeviceInfo].Put(suiteCtx, core.DeviceInfoKey(dev), b)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = buckets[core.BucketDeviceInfo].Delete(suiteCtx, core.DeviceInfoKey(dev)) })
		Eventually(func() map[string]string {
			d := &fleet.Device{}
			if err := k8s.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: dev}, d); err != nil {
				return nil
			}
			return d.Labels
		}).Should(Equal(map[string]string{"site": "east"}))
		Eventually(func() string { return get(ns, dev, &fleet.Device{}).Status.CurrentVersion }).Should(Equal("v1.0.0"))
	})
})

var _ = Describe("AgentRollouts", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	rollout := func(name string, waves []intstr.IntOrString, threshold *intstr.IntOrString, maxU *intstr.IntOrString) *fleet.AgentRollout {
		r := &fleet.AgentRollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: fleet.AgentRolloutSpec{Version: "v1.1.0",
				Artifact:       fleet.ArtifactRef{Object: "flotilla-agent/v1.1.0", SHA256: sha, Size: 6 << 20},
				TargetSelector: fleet.LabelSelector{MatchLabels: fleet.MatchLabelsOf(map[string]string{"fleet": ns})},
				Rollout:        fleet.RolloutStrategy{Waves: waves, FailureThreshold: threshold, MaxUnavailable: maxU}}}
		Expect(k8s.Create(suiteCtx, r)).To(Succeed())
		return r
	}
	markerAttempt := func(dev string) func() uint32 {
		return func() uint32 {
			e, err := buckets[core.BucketAgentUpgrade].Get(suiteCtx, dev)
			if err != nil {
				return 0
			}
			m, err := core.DecodeUpgradeMarker(e.Value())
			Expect(err).NotTo(HaveOccurred())
			return m.Attempt
		}
	}

	It("proceeds wave by wave and pauses past its failure threshold", func() {
		startOperator(ns, opcore.Config{OfflineAfter: 3 * time.Second})
		names := []string{ns + "-1", ns + "-2", ns + "-3"}
		agents := map[string]*fakeAgent{}
		for _, n := range names {
			mkDevice(ns, n, map[string]string{"fleet": ns})
			agents[n] = startFakeAgent(n, "v1.0.0")
		}
		agents[names[1]].set(func(a *fakeAgent) { a.fail = true })
		zero := intstr.FromInt32(0)
		rollout("up", []intstr.IntOrString{intstr.FromInt32(1), intstr.FromInt32(1)}, &zero, nil)

		// Wave 1: only the first device gets a marker, and it commits after
		// the operator's upgrade-stop.
		Eventually(markerAttempt(names[0])).Should(Equal(uint32(1)))
		Expect(markerAttempt(names[1])()).To(BeZero())
		Eventually(func() string { return get(ns, names[0], &fleet.Device{}).Status.CurrentVersion }).
			WithTimeout(15 * time.Second).Should(Equal("v1.1.0"))
		Expect(agents[names[0]].stopsSeen()).To(Equal([]uint32{1}))
		// Wave 2 fails → paused: the third device never gets a marker.
		Eventually(markerAttempt(names[1])).Should(Equal(uint32(1)))
		Eventually(func() string {
			return condStatus(get(ns, "up", &fleet.AgentRollout{}).Status.Conditions, "Paused")
		}).Should(Equal("True/" + opcore.ReasonFailureThreshold))
		Consistently(markerAttempt(names[2]), "2s").Should(BeZero())
		st := get(ns, "up", &fleet.AgentRollout{}).Status
		Expect(st.Counts).To(Equal(fleet.AgentRolloutCounts{Total: 3, Succeeded: 1, Failed: 1, Waiting: 1}))
		Expect(st.Waves).To(HaveLen(3))
		Expect(st.Waves[0].Phase).To(Equal("Complete"))
		Expect(get(ns, names[1], &fleet.Device{}).Status.Upgrade.Phase).To(Equal("Failed"))

		// Raising the threshold resumes the rollout.
		one := intstr.FromInt32(1)
		update(ns, "up", &fleet.AgentRollout{}, func(r *fleet.AgentRollout) { r.Spec.Rollout.FailureThreshold = &one })
		Eventually(markerAttempt(names[2])).Should(Equal(uint32(1)))
		Eventually(func() string { return get(ns, names[2], &fleet.Device{}).Status.CurrentVersion }).
			WithTimeout(15 * time.Second).Should(Equal("v1.1.0"))
	})

	It("converges after an operator restart mid-rollout with no duplicate upgrade-stop and no lost marker", func() {
		cfg := opcore.Config{OfflineAfter: 3 * time.Second}
		op1 := startOperator(ns, cfg)
		names := []string{ns + "-1", ns + "-2", ns + "-3"}
		agents := map[string]*fakeAgent{}
		for _, n := range names {
			mkDevice(ns, n, map[string]string{"fleet": ns})
			agents[n] = startFakeAgent(n, "v1.0.0")
		}
		// The second device's reply to upgrade-stop is lost: the operator
		// sent the stop, the attempt is not committed yet.
		agents[names[1]].set(func(a *fakeAgent) { a.answer = false })
		one := intstr.FromInt32(1)
		rollout("up", nil, nil, &one)
		Eventually(func() string { return get(ns, names[0], &fleet.Device{}).Status.CurrentVersion }).
			WithTimeout(15 * time.Second).Should(Equal("v1.1.0"))
		Eventually(agents[names[1]].stopsSeen).WithTimeout(15 * time.Second).Should(Equal([]uint32{1}))
		Eventually(func() int64 { return get(ns, names[1], &fleet.Device{}).Status.Upgrade.StopSentAttempt }).Should(Equal(int64(1)))
		before, err := buckets[core.BucketAgentUpgrade].Get(suiteCtx, names[1])
		Expect(err).NotTo(HaveOccurred())

		op1.stop()
		startOperator(ns, cfg)
		// The candidate keeps heartbeating for attempt 1 and the old agent
		// still says WaitingForStop: the new operator must not stop again,
		// nor write a new marker.
		Consistently(agents[names[1]].stopsSeen, "3s").Should(Equal([]uint32{1}))
		after, err := buckets[core.BucketAgentUpgrade].Get(suiteCtx, names[1])
		Expect(err).NotTo(HaveOccurred())
		Expect(after.Revision()).To(Equal(before.Revision()), "marker rewritten after restart")
		Expect(markerAttempt(names[2])()).To(BeZero(), "maxUnavailable 1: the third device waits")

		// The stop did reach the old agent after all: it commits.
		agents[names[1]].commit()
		Eventually(markerAttempt(names[2])).Should(Equal(uint32(1)))
		Eventually(func() string {
			return condStatus(get(ns, "up", &fleet.AgentRollout{}).Status.Conditions, "Complete")
		}).WithTimeout(20 * time.Second).Should(Equal("True/AllDevicesUpgraded"))
		for _, n := range names {
			Expect(agents[n].stopsSeen()).To(Equal([]uint32{1}), "stops seen by %s", n)
		}
	})
})

var _ = Describe("Validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	dep := func(name string, f func(*fleet.Deployment)) client.Object {
		d := &fleet.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: fleet.DeploymentSpec{Workload: fleet.WorkloadTemplate{Name: "web", Version: "1.0"}}}
		f(d)
		return d
	}
	ar := func(f func(*fleet.AgentRollout)) client.Object {
		r := &fleet.AgentRollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ar"},
			Spec: fleet.AgentRolloutSpec{Version: "v1.2.3", Artifact: fleet.ArtifactRef{Object: "a/v1.2.3", SHA256: sha, Size: 1}}}
		f(r)
		return r
	}
	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }

	DescribeTable("the API server rejects invalid objects with a message naming the field",
		func(obj func() client.Object, field, message string) {
			err := k8s.Create(suiteCtx, obj())
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(field))
			Expect(err.Error()).To(ContainSubstring(message))
			fmt.Fprintf(GinkgoWriter, "rejected: %v\n", err)
		},
		Entry("unknown selector operator", func() client.Object {
			return dep("d1", func(d *fleet.Deployment) {
				d.Spec.TargetSelector.MatchExpressions = []fleet.LabelSelectorRequirement{{Key: "a", Operator: "Maybe", Values: []string{"x"}}}
			})
		}, "spec.targetSelector.matchExpressions[0].operator", `Unsupported value: "Maybe"`),
		Entry("In without values", func() client.Object {
			return dep("d2", func(d *fleet.Deployment) {
				d.Spec.TargetSelector.MatchExpressions = []fleet.LabelSelectorRequirement{{Key: "a", Operator: "In"}}
			})
		}, "spec.targetSelector.matchExpressions[0]", "operators In and NotIn need at least one value"),
		Entry("bad label key", func() client.Object {
			return dep("d3", func(d *fleet.Deployment) {
				d.Spec.TargetSelector.MatchLabels = fleet.MatchLabelsOf(map[string]string{"-bad": "x"})
			})
		}, "spec.targetSelector.matchLabels", "every matchLabels key must be a label key"),
		Entry("wave over 100%", func() client.Object {
			return dep("d4", func(d *fleet.Deployment) { d.Spec.Rollout.Waves = []intstr.IntOrString{intstr.FromString("150%")} })
		}, "spec.rollout.waves", "each wave must be a positive device count or a percentage between 1% and 100%"),
		Entry("maxUnavailable over 100%", func() client.Object {
			return dep("d5", func(d *fleet.Deployment) { d.Spec.Rollout.MaxUnavailable = pct("101%") })
		}, "spec.rollout.maxUnavailable", "maxUnavailable must be a non-negative count or a percentage between 0% and 100%"),
		Entry("failureThreshold over 100%", func() client.Object {
			return dep("d6", func(d *fleet.Deployment) { d.Spec.Rollout.FailureThreshold = pct("200%") })
		}, "spec.rollout.failureThreshold", "failureThreshold must be a non-negative count"),
		Entry("empty workload name", func() client.Object {
			return dep("d7", func(d *fleet.Deployment) { d.Spec.Workload.Name = "" })
		}, "spec.workload.name", "at least 1 chars long"),
		Entry("empty workload version", func() client.Object {
			return dep("d8", func(d *fleet.Deployment) { d.Spec.Workload.Version = "" })
		}, "spec.workload.version", "at least 1 chars long"),
		Entry("dotted name", func() client.Object { return dep("web.v2", func(*fleet.Deployment) {}) },
			"metadata.name", "must not contain '.'"),
		Entry("podman without image", func() client.Object {
			return dep("d9", func(d *fleet.Deployment) { d.Spec.Workload.Runtime = "podman" })
		}, "spec.workload", "image is required for the podman runtime"),
		Entry("malformed agent version", func() client.Object {
			return ar(func(r *fleet.AgentRollout) { r.Spec.Version = "1.2" })
		}, "spec.version", "should match"),
		Entry("malformed SHA-256", func() client.Object {
			return ar(func(r *fleet.AgentRollout) { r.Spec.Artifact.SHA256 = "XYZ" })
		}, "spec.artifact.sha256", "should match"),
		Entry("artifact with object and url", func() client.Object {
			return ar(func(r *fleet.AgentRollout) { r.Spec.Artifact.URL = "https://example.com/a" })
		}, "spec.artifact", "set exactly one of object and url"),
		Entry("artifact with neither object nor url", func() client.Object {
			return ar(func(r *fleet.AgentRollout) { r.Spec.Artifact.Object = "" })
		}, "spec.artifact", "set exactly one of object and url"),
	)
})
