//go:build integration

// Package integration runs real agent binaries (built in BeforeSuite at
// v1…v6, some with test faults) against an embedded nats-server, driven by
// the real operator (operator/runner with its NATS adapter and the in-memory
// object store, no Kubernetes). Run with: make test-integration.
package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/natsadapter"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/operator/runner"
)

func TestIntegration(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "agent integration")
}

var (
	root    string
	builds  = map[string]build{}
	ns      *natsServer
	nc      *nats.Conn // the test's own connection
	js      jetstream.JetStream
	store   *runner.MemStore
	devices []*device
	wref    core.ArtifactRef
	steps   *stepRecorder
)

var _ = BeforeSuite(func(ctx SpecContext) {
	var err error
	root, err = os.MkdirTemp("", "flotilla-agent-it-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, root)

	By("building agent binaries v1…v6")
	for _, b := range []struct{ v, fault string }{
		{"v1.0.0", ""}, {"v2.0.0", ""}, {"v3.0.0", "self-test-fails"}, {"v4.0.0", "crash-after-cutover"},
		{"v5.0.0", "slow-self-test"}, {"v6.0.0", "slow-self-test"},
	} {
		builds[b.v] = buildAgent(filepath.Join(root, "builds"), b.v, b.fault)
	}
	fi, _ := os.Stat(builds["v1.0.0"].Path)
	AddReportEntry("agent binary size", fmt.Sprintf("%.1f MiB (%d bytes, -s -w, CGO_ENABLED=0)", float64(fi.Size())/(1<<20), fi.Size()))

	By("starting an embedded nats-server with JetStream")
	ns = startNATS(filepath.Join(root, "jetstream"))
	DeferCleanup(func() { ns.srv.Shutdown(); ns.srv.WaitForShutdown() })
	nc, err = nats.Connect(ns.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	js, err = jetstream.New(nc)
	Expect(err).NotTo(HaveOccurred())

	By("uploading artifacts")
	for _, v := range []string{"v2.0.0", "v3.0.0", "v4.0.0", "v5.0.0", "v6.0.0"} {
		uploadArtifact(ctx, js, builds[v].Ref.Object, builds[v].Path)
	}
	script := filepath.Join(root, "ticker.sh")
	Expect(os.WriteFile(script, []byte("#!/bin/sh\nwhile :; do echo \"tick $FLOTILLA_WORKLOAD_VERSION\"; sleep 0.2; done\n"), 0o755)).To(Succeed())
	wref = refOf(script, "ticker/1.0")
	uploadArtifact(ctx, js, wref.Object, script)

	By("starting the operator (opcore + NATS adapter + in-memory store)")
	store = runner.NewMemStore()
	startOperator()

	steps = newStepRecorder()
	go steps.run(context.Background(), js)

	By("installing v1 on three devices")
	devices = []*device{
		newDevice(root, "dev-a", map[string]string{"zone": "a"}, ns.URL(), true),
		newDevice(root, "dev-b", map[string]string{"zone": "a"}, ns.URL(), false),
		newDevice(root, "dev-c", map[string]string{"zone": "b"}, ns.URL(), false),
	}
	for _, d := range devices {
		d.installAndStart(builds["v1.0.0"])
	}
}, NodeTimeout(10*time.Minute))

func refOf(path, object string) core.ArtifactRef {
	sum, err := fileSum(path)
	Expect(err).NotTo(HaveOccurred())
	fi, _ := os.Stat(path)
	return core.ArtifactRef{Object: object, SHA256: sum, Size: fi.Size()}
}

// startOperator runs the operator and restarts it if it stops with an error
// (as its Deployment would), e.g. when NATS went away.
func startOperator() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	DeferCleanup(func() { cancel(); <-done })
	logf, err := os.Create(filepath.Join(root, "operator.log"))
	Expect(err).NotTo(HaveOccurred())
	log := slog.New(slog.NewJSONHandler(logf, nil))
	go func() {
		defer close(done)
		defer logf.Close()
		for ctx.Err() == nil {
			onc, err := natsadapter.Connect(ns.URL(), nats.ReconnectWait(200*time.Millisecond))
			if err == nil {
				err = runner.New(runner.Options{NATS: onc, Store: store, Logger: log, Core: opcore.Config{
					OfflineAfter: 10 * time.Second, AttemptTimeout: 2 * time.Minute, CutoverTimeoutSec: 30,
					LastSeenResolution: time.Second, CreateDevices: true}}).Run(ctx)
				onc.Close()
			}
			if ctx.Err() == nil {
				log.Warn("operator stopped; restarting", "err", err)
				time.Sleep(500 * time.Millisecond)
			}
		}
	}()
}

func dev(name string) *device {
	for _, d := range devices {
		if d.Name == name {
			return d
		}
	}
	panic(name)
}

// diag is appended to failure messages.
func diag() string {
	var b strings.Builder
	for _, d := range devices {
		fmt.Fprintf(&b, "\n--- %s agent.log (tail) ---\n%s\n", d.Name, d.logTail(15))
	}
	return b.String()
}

// expectRunning waits until every named device runs v: heartbeat at v, the
// active agent's status written by v, Device status currentVersion v.
func expectRunning(ctx context.Context, v string, timeout time.Duration, names ...string) {
	GinkgoHelper()
	for _, n := range names {
		Eventually(func(g Gomega) {
			hb := heartbeatOf(ctx, js, n)
			g.Expect(hb.AgentVersion.String()).To(Equal(v), "heartbeat of %s", n)
			st := statusOf(ctx, js, n)
			g.Expect(st.RunningVersion.String()).To(Equal(v))
			d, ok := store.Device(n)
			g.Expect(ok).To(BeTrue())
			g.Expect(d.Status.CurrentVersion.String()).To(Equal(v), "Device %s currentVersion", n)
		}).WithTimeout(timeout).WithPolling(250*time.Millisecond).Should(Succeed(), func() string { return diag() })
	}
}

func expectOnDisk(v string, names ...string) {
	GinkgoHelper()
	for _, n := range names {
		d := dev(n)
		Eventually(func(g Gomega) {
			cur, err := d.current()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cur.String()).To(Equal(v), "%s current", n)
			g.Expect(d.journalConsistent()).To(Succeed())
		}).WithTimeout(20 * time.Second).Should(Succeed())
	}
}

func noCandidatesLeft(names ...string) {
	GinkgoHelper()
	for _, n := range names {
		d := dev(n)
		Eventually(func() []string {
			var live []string
			files, _ := filepath.Glob(filepath.Join(d.DataDir, "run", "candidate-*.pid"))
			for _, f := range files {
				b, _ := os.ReadFile(f)
				var pid int
				fmt.Sscan(string(b), &pid)
				if d.ours(pid) && pid != d.activePID() {
					live = append(live, filepath.Base(f))
				}
			}
			return live
		}).WithTimeout(20 * time.Second).Should(BeEmpty())
	}
}

func rollout(name, v string, sel core.LabelSelector) {
	for _, r := range []string{"to-v2", "to-v3", "to-v4", "to-v5", "to-v6"} {
		if r != name {
			store.DeleteAgentRollout(r)
		}
	}
	b := builds[v]
	store.PutAgentRollout(opcore.AgentRolloutSpec{Name: name, Version: b.Version, Artifact: b.Ref, Selector: sel})
}

var all = []string{"dev-a", "dev-b", "dev-c"}

var _ = Describe("flotilla-agent against NATS and the operator", Ordered, func() {
	It("registers, heartbeats, and runs a deployment on matching devices only", func(ctx SpecContext) {
		expectRunning(ctx, "v1.0.0", 60*time.Second, all...)
		expectOnDisk("v1.0.0", all...) // a fresh install preserved itself

		store.PutDeployment(opcore.DeploymentSpec{Name: "ticker",
			Selector: core.LabelSelector{MatchLabels: map[string]string{"zone": "a"}},
			Workload: opcore.Workload{Name: "ticker", Version: "1.0", Runtime: core.RuntimeProcess, Artifact: &wref}})
		for _, n := range []string{"dev-a", "dev-b"} {
			Eventually(func(g Gomega) {
				b := kvGet(ctx, js, core.BucketDeviceState, core.DeviceStateKey(n, "ticker"))
				g.Expect(b).NotTo(BeNil())
				st, err := core.DecodeDeviceState(b)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(st.Phase).To(Equal(core.PhaseRunning))
			}).WithTimeout(30*time.Second).Should(Succeed(), func() string { return diag() })
		}
		Eventually(func() int {
			d, _ := store.Deployment("ticker")
			return d.Status.Counts.Succeeded
		}).WithTimeout(30 * time.Second).Should(Equal(2))
		Consistently(func() []byte {
			return kvGet(ctx, js, core.BucketDeviceState, core.DeviceStateKey("dev-c", "ticker"))
		}).WithTimeout(2 * time.Second).Should(BeNil())

		By("commands: ping, logs, exec (allowed and disabled), an offline device")
		rep, err := natsadapter.Command(ctx, nc, "dev-a", core.CommandRequest{Verb: core.VerbPing, ID: "p1"}, 5*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Ping.AgentVersion.String()).To(Equal("v1.0.0"))
		Eventually(func(g Gomega) {
			rep, err := natsadapter.Command(ctx, nc, "dev-a", core.CommandRequest{Verb: core.VerbLogs,
				Logs: &core.LogsArgs{Deployment: "ticker", Lines: 3}}, 5*time.Second)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(rep.Logs.Lines).To(HaveLen(3))
			g.Expect(rep.Logs.Lines[2]).To(Equal("tick 1.0"))
		}).WithTimeout(10 * time.Second).Should(Succeed())
		rep, err = natsadapter.Command(ctx, nc, "dev-b", core.CommandRequest{Verb: core.VerbLogs,
			Logs: &core.LogsArgs{Lines: 1_000_000}}, 5*time.Second)
		Expect(err).NotTo(HaveOccurred(), "the agent's own log")
		Expect(len(rep.Logs.Lines)).To(BeNumerically("<=", core.MaxLogLines))
		Expect(strings.Join(rep.Logs.Lines, "\n")).To(ContainSubstring("nats connected"))
		_, err = natsadapter.Command(ctx, nc, "dev-a", core.CommandRequest{Verb: core.VerbLogs,
			Logs: &core.LogsArgs{Deployment: "nope"}}, 5*time.Second)
		Expect(err).To(HaveOccurred(), "logs of a deployment the device does not run")
		var ce *core.CommandError
		Expect(errors.As(err, &ce)).To(BeTrue())
		rep, err = natsadapter.Command(ctx, nc, "dev-a", core.CommandRequest{Verb: core.VerbExec,
			Exec: &core.ExecArgs{Command: []string{"/bin/sh", "-c", "echo hello; exit 3"}}}, 5*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Exec.Stdout).To(Equal("hello\n"))
		Expect(rep.Exec.ExitCode).To(Equal(3))
		_, err = natsadapter.Command(ctx, nc, "dev-b", core.CommandRequest{Verb: core.VerbExec,
			Exec: &core.ExecArgs{Command: []string{"/bin/true"}}}, 5*time.Second)
		Expect(errors.Is(err, core.ErrDisabled)).To(BeTrue(), "exec on dev-b: %v", err)
		_, err = natsadapter.Command(ctx, nc, "dev-zzz", core.CommandRequest{Verb: core.VerbPing}, 2*time.Second)
		Expect(errors.Is(err, core.ErrOffline)).To(BeTrue(), "ping of a device with no agent: %v", err)

		By("measuring idle RSS")
		time.Sleep(3 * time.Second)
		var rss []string
		for _, d := range devices {
			rss = append(rss, fmt.Sprintf("%s %d KiB", d.Name, rssKiB(d.activePID())))
		}
		AddReportEntry("idle RSS (v1, heartbeat 500ms)", strings.Join(rss, ", "))
	})

	It("upgrades v1 → v2 and commits once the operator has seen v2 heartbeats", func(ctx SpecContext) {
		wpid := workloadPID("dev-a", "ticker")
		Expect(wpid).NotTo(BeZero())
		rollout("to-v2", "v2.0.0", core.LabelSelector{})
		expectRunning(ctx, "v2.0.0", 90*time.Second, all...)
		expectOnDisk("v2.0.0", all...)
		for _, n := range all {
			st := statusOf(ctx, js, n)
			Expect(st.Phase).To(Equal(core.UpgradeCommitted))
			d, _ := store.Device(n)
			Expect(d.Status.Upgrade.StopSentAttempt).To(Equal(st.Attempt), "operator recorded the stop it sent")
		}
		By("the workload kept running through the upgrade (adopted, not restarted)")
		Expect(workloadPID("dev-a", "ticker")).To(Equal(wpid))
		Eventually(func() int {
			d, _ := store.Deployment("ticker")
			return d.Status.Counts.Succeeded
		}).WithTimeout(30 * time.Second).Should(Equal(2))
		noCandidatesLeft(all...)
		AddReportEntry("upgrade steps v1→v2 (ms, from agent-upgrade-status timestamps)", steps.table("v2.0.0"))
	})

	It("v3 fails its self-test: every device stays on v2 and reports Failed(SelfTestFailed)", func(ctx SpecContext) {
		rollout("to-v3", "v3.0.0", core.LabelSelector{})
		for _, n := range all {
			Eventually(func(g Gomega) {
				st := statusOf(ctx, js, n)
				g.Expect(st.TargetVersion).NotTo(BeNil())
				g.Expect(st.TargetVersion.String()).To(Equal("v3.0.0"))
				g.Expect(st.Phase).To(Equal(core.UpgradeFailed))
				g.Expect(st.Reason).To(Equal(core.ReasonSelfTestFailed))
				g.Expect(st.Detail).To(ContainSubstring("self-test"))
				d, _ := store.Device(n)
				g.Expect(string(d.Status.Upgrade.Phase)).To(Equal("Failed"))
			}).WithTimeout(60*time.Second).Should(Succeed(), func() string { return diag() })
		}
		expectRunning(ctx, "v2.0.0", 10*time.Second, all...)
		expectOnDisk("v2.0.0", all...)
	})

	It("v4 crashes after cutover: every device rolls back to v2 automatically", func(ctx SpecContext) {
		rollout("to-v4", "v4.0.0", core.LabelSelector{})
		for _, n := range all {
			Eventually(func(g Gomega) {
				st := statusOf(ctx, js, n)
				g.Expect(st.TargetVersion).NotTo(BeNil())
				g.Expect(st.TargetVersion.String()).To(Equal("v4.0.0"))
				g.Expect(st.Phase).To(Equal(core.UpgradeRolledBack))
				g.Expect(st.Reason).NotTo(BeEmpty())
			}).WithTimeout(60*time.Second).Should(Succeed(), func() string { return diag() })
		}
		expectRunning(ctx, "v2.0.0", 10*time.Second, all...)
		expectOnDisk("v2.0.0", all...)
		noCandidatesLeft(all...)
		AddReportEntry("rollback v2→v4→v2 (ms)", steps.table("v4.0.0"))
	})

	It("a NATS server restart mid-rollout: every agent reconnects and the rollout converges", func(ctx SpecContext) {
		rollout("to-v5", "v5.0.0", core.LabelSelector{})
		Eventually(func() bool {
			for _, n := range all {
				st := statusOf(ctx, js, n)
				if st.TargetVersion != nil && st.TargetVersion.String() == "v5.0.0" && st.Phase == core.UpgradeVerifying {
					return true
				}
			}
			return false
		}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(BeTrue())
		By("restarting nats-server while v5 self-tests")
		ns.restart(time.Second)
		expectRunning(ctx, "v5.0.0", 2*time.Minute, all...)
		expectOnDisk("v5.0.0", all...)
		noCandidatesLeft(all...)
	})

	It("kill -9 of an agent mid-staging: it restarts consistent", func(ctx SpecContext) {
		d := dev("dev-c")
		rollout("to-v6", "v6.0.0", core.LabelSelector{MatchLabels: map[string]string{"zone": "b"}})
		Eventually(func() core.AgentUpgradePhase {
			st := statusOf(ctx, js, "dev-c")
			if st.TargetVersion == nil || st.TargetVersion.String() != "v6.0.0" {
				return ""
			}
			return st.Phase
		}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Equal(core.UpgradeVerifying))
		pid := d.activePID()
		Expect(pid).NotTo(BeZero())
		Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
		Eventually(func() bool { return d.ours(pid) }).WithTimeout(5 * time.Second).Should(BeFalse())

		By("the journal has an open attempt and current still points at a verified v5")
		cur, err := d.current()
		Expect(err).NotTo(HaveOccurred())
		Expect(cur.String()).To(Equal("v5.0.0"))
		Expect(d.journalConsistent()).NotTo(Succeed(), "the kill should leave the attempt open")

		By("restarting the agent from current, as its service manager would")
		d.start(filepath.Join(d.DataDir, "current", "flotilla-agent"))
		// The interrupted attempt is closed; the operator may then retry
		// and reach v6, or count the device failed: both leave a verified
		// current and a journal whose every attempt ended.
		Eventually(func(g Gomega) {
			g.Expect(d.journalConsistent()).To(Succeed())
			hb := heartbeatOf(ctx, js, "dev-c")
			cur, err := d.current()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(hb.AgentVersion.String()).To(Equal(cur.String()))
			st := statusOf(ctx, js, "dev-c")
			g.Expect(st.Phase.Terminal()).To(BeTrue(), "status %s", st)
		}).WithTimeout(90*time.Second).Should(Succeed(), func() string { return diag() })
		st := statusOf(ctx, js, "dev-c")
		AddReportEntry("after kill -9 in Verifying", st.String())
		noCandidatesLeft("dev-c")
	})

	It("replaces a workload on a new version and stops it when the deployment is deleted", func(ctx SpecContext) {
		old := workloadPID("dev-a", "ticker")
		Expect(old).NotTo(BeZero())
		store.PutDeployment(opcore.DeploymentSpec{Name: "ticker",
			Selector: core.LabelSelector{MatchLabels: map[string]string{"zone": "a"}},
			Workload: opcore.Workload{Name: "ticker", Version: "2.0", Runtime: core.RuntimeProcess, Artifact: &wref}})
		for _, n := range []string{"dev-a", "dev-b"} {
			Eventually(func(g Gomega) {
				rep, err := natsadapter.Command(ctx, nc, n, core.CommandRequest{Verb: core.VerbLogs,
					Logs: &core.LogsArgs{Deployment: "ticker", Lines: 1}}, 5*time.Second)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(rep.Logs.Lines).To(Equal([]string{"tick 2.0"}))
			}).WithTimeout(30*time.Second).Should(Succeed(), func() string { return diag() })
		}
		Expect(workloadPID("dev-a", "ticker")).NotTo(Equal(old))
		Eventually(func() bool { return dev("dev-a").ours(old) }).WithTimeout(10*time.Second).Should(BeFalse(), "v1.0 workload still running")

		running := workloadPID("dev-a", "ticker")
		store.DeleteDeployment("ticker")
		for _, n := range []string{"dev-a", "dev-b"} {
			Eventually(func() []byte {
				return kvGet(ctx, js, core.BucketDeviceState, core.DeviceStateKey(n, "ticker"))
			}).WithTimeout(30*time.Second).Should(BeNil(), "device-state of %s", n)
			Eventually(func() int { return workloadPID(n, "ticker") }).WithTimeout(10 * time.Second).Should(BeZero())
		}
		Eventually(func() bool { return dev("dev-a").ours(running) }).WithTimeout(10*time.Second).Should(BeFalse(), "workload survived its deployment")
	})
})

func workloadPID(dev, dep string) int {
	b, err := os.ReadFile(filepath.Join(root, dev, "data", "workloads", dep, "state.json"))
	if err != nil {
		return 0
	}
	var pid int
	if i := strings.Index(string(b), `"pid":`); i >= 0 {
		fmt.Sscan(strings.TrimLeft(string(b)[i+6:], " "), &pid)
	}
	return pid
}

// stepRecorder watches agent-upgrade-status and keeps, per device and
// attempt, the device-clock time of each phase.
type stepRecorder struct {
	mu  sync.Mutex
	log map[string]map[core.AgentUpgradePhase]int64 // device/attempt/target → phase → At
}

func newStepRecorder() *stepRecorder {
	return &stepRecorder{log: map[string]map[core.AgentUpgradePhase]int64{}}
}

func (s *stepRecorder) run(ctx context.Context, js jetstream.JetStream) {
	for ctx.Err() == nil {
		kv, err := js.KeyValue(ctx, core.BucketAgentUpgradeStatus)
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		w, err := kv.WatchAll(ctx)
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			st, err := core.DecodeUpgradeStatus(e.Value())
			if err != nil || st.TargetVersion == nil {
				continue
			}
			k := fmt.Sprintf("%s/%d/%s", e.Key(), st.Attempt, st.TargetVersion)
			s.mu.Lock()
			if s.log[k] == nil {
				s.log[k] = map[core.AgentUpgradePhase]int64{}
			}
			if _, ok := s.log[k][st.Phase]; !ok {
				s.log[k][st.Phase] = st.At
			}
			s.mu.Unlock()
		}
		w.Stop()
	}
}

// table renders the step durations of every attempt towards target.
func (s *stepRecorder) table(target string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.log {
		if strings.HasSuffix(k, "/"+target) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	order := []core.AgentUpgradePhase{core.UpgradeStaging, core.UpgradeVerifying, core.UpgradeCutoverReady,
		core.UpgradeWaitingForStop, core.UpgradeCommitted, core.UpgradeFailed, core.UpgradeReverting, core.UpgradeRolledBack}
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n%s:", k)
		var prev int64
		var prevP core.AgentUpgradePhase
		for _, p := range order {
			at, ok := s.log[k][p]
			if !ok {
				continue
			}
			if prev != 0 {
				fmt.Fprintf(&b, " %s→%s %dms;", prevP, p, at-prev)
			}
			prev, prevP = at, p
		}
		if first, ok := s.log[k][core.UpgradeStaging]; ok && prev != 0 {
			fmt.Fprintf(&b, " total %dms", prev-first)
		}
	}
	return b.String()
}
