package web

import (
	"context"
	"errors"
	"github.com/flotilla-fleet/flotilla/internal/natstest"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/flotilla-fleet/flotilla/core"
	fleet "github.com/flotilla-fleet/flotilla/operator/api/v1alpha1"
)

func TestRealFleetService(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "RealFleetService")
}

// shiftClock is the system clock moved by a settable offset, so a spec can
// age heartbeats that the NATS server stamped with real time.
type shiftClock struct {
	mu    sync.Mutex
	shift time.Duration
}

func (c *shiftClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.shift)
}

func (c *shiftClock) Set(d time.Duration) {
	c.mu.Lock()
	c.shift = d
	c.mu.Unlock()
}

const testNS = "fleet"

func device(name string, labels map[string]string, mutate func(*fleet.Device)) *fleet.Device {
	d := &fleet.Device{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Labels: labels}}
	d.Status.CurrentVersion = "v1.2.0"
	if mutate != nil {
		mutate(d)
	}
	return d
}

var _ = Describe("RealFleetService over Kubernetes objects and NATS", func() {
	var (
		ctx   context.Context
		kube  client.Client
		nc    *nats.Conn
		kvHB  jetstream.KeyValue
		kvInf jetstream.KeyValue
		clock *shiftClock
		svc   *RealFleetService
	)

	BeforeEach(func() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(cancel)

		ns := natstest.Start(GinkgoT())
		var err error
		nc, err = nats.Connect(ns.ClientURL())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(nc.Close)
		js, err := jetstream.New(nc)
		Expect(err).NotTo(HaveOccurred())
		kvHB, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: core.BucketDeviceHeartbeat})
		Expect(err).NotTo(HaveOccurred())
		kvInf, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: core.BucketDeviceInfo})
		Expect(err).NotTo(HaveOccurred())

		scheme, err := Scheme()
		Expect(err).NotTo(HaveOccurred())
		rollout := &fleet.AgentRollout{ObjectMeta: metav1.ObjectMeta{Name: "agent-v1-3", Namespace: testNS},
			Spec: fleet.AgentRolloutSpec{Version: "v1.3.0"},
			Status: fleet.AgentRolloutStatus{Counts: fleet.AgentRolloutCounts{Total: 3, Succeeded: 1, Failed: 1, InProgress: 1},
				ByPhase: map[string]int32{"Succeeded": 1, "Verifying": 1, "RolledBack": 1},
				Waves:   []fleet.WaveStatus{{Index: 1, Devices: 1, Started: 1, Done: 1, Phase: "Complete"}, {Index: 2, Devices: 2, Started: 2, Done: 1, Phase: "InProgress"}}}}
		deploy := &fleet.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "proxy", Namespace: testNS, Generation: 2},
			Spec: fleet.DeploymentSpec{Workload: fleet.WorkloadTemplate{Name: "envoy", Version: "1.25"},
				TargetSelector: fleet.LabelSelector{MatchLabels: fleet.MatchLabelsOf(map[string]string{"class": "gateway"})}},
			Status: fleet.DeploymentStatus{Counts: fleet.DeploymentCounts{Total: 2, Succeeded: 1, Failed: 1}, LastError: "dev-b: boom"}}
		kube = fake.NewClientBuilder().WithScheme(scheme).WithObjects(
			device("dev-a", map[string]string{"class": "gateway"}, func(d *fleet.Device) {
				d.Status.CurrentVersion = "v1.3.0"
				d.Status.Upgrade = fleet.DeviceUpgradeStatus{Phase: "Committed", Rollout: "agent-v1-3", TargetVersion: "v1.3.0", Attempt: 1}
				d.Status.Deployments = []fleet.DeviceDeploymentPhase{{Deployment: "proxy", Phase: "Running"}}
			}),
			device("dev-b", map[string]string{"class": "gateway"}, func(d *fleet.Device) {
				d.Status.Upgrade = fleet.DeviceUpgradeStatus{Phase: "RolledBack", Rollout: "agent-v1-3", TargetVersion: "v1.3.0",
					Attempt: 2, Message: "CutoverTimeout no heartbeat from v1.3.0 within 120s"}
				d.Status.Deployments = []fleet.DeviceDeploymentPhase{{Deployment: "proxy", Phase: "Failed", LastError: "boom"}}
			}),
			device("dev-c", map[string]string{"class": "sensor"}, func(d *fleet.Device) {
				d.Status.Upgrade = fleet.DeviceUpgradeStatus{Phase: "Verifying", Rollout: "agent-v1-3", TargetVersion: "v1.3.0", Attempt: 3}
			}),
			rollout, deploy,
		).Build()

		clock = &shiftClock{}
		svc, err = NewRealFleetService(RealConfig{Reader: kube, Writer: kube, Namespace: testNS, NATS: nc,
			Clock: clock, OnlineWindow: 30 * time.Second, CommandTimeout: 2 * time.Second,
			Logger: slog.New(slog.NewTextHandler(GinkgoWriter, nil))})
		Expect(err).NotTo(HaveOccurred())
		done := make(chan struct{})
		go func() { defer close(done); _ = svc.Run(ctx) }()
		DeferCleanup(func() { cancel(); <-done })
	})

	heartbeat := func(dev, version string) {
		b, err := core.Heartbeat{AgentVersion: core.MustParseVersion(version), Seq: 1, UptimeSec: 5}.Encode()
		Expect(err).NotTo(HaveOccurred())
		_, err = kvHB.Put(ctx, core.HeartbeatKey(dev), b)
		Expect(err).NotTo(HaveOccurred())
	}

	It("lists, filters and pages the Device objects", func() {
		p, err := svc.ListDevices(ctx, DeviceQuery{})
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Total).To(Equal(3))
		Expect(p.Items[0].ID).To(Equal("dev-a"))
		Expect(p.Versions).To(Equal([]string{"v1.3.0", "v1.2.0"}))

		p, err = svc.ListDevices(ctx, DeviceQuery{Phase: core.UpgradeRolledBack})
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Total).To(Equal(1))
		Expect(p.Items[0].Upgrade.Reason).To(Equal(core.ReasonCutoverTimeout))

		sel, _ := ParseLabelFilter("class=gateway")
		p, _ = svc.ListDevices(ctx, DeviceQuery{Labels: sel, PerPage: 1, Page: 2})
		Expect(p.Total).To(Equal(2))
		Expect(p.Items).To(HaveLen(1))
		Expect(p.Items[0].ID).To(Equal("dev-b"))

		_, err = svc.Device(ctx, "dev-zzz")
		Expect(errors.Is(err, ErrNotFound)).To(BeTrue())
		_, err = svc.Device(ctx, "bad.name")
		Expect(errors.Is(err, ErrNotFound)).To(BeTrue())
	})

	It("shows a device online from its heartbeats, and offline when they stop", func() {
		sub := svc.Changes().Subscribe()
		defer sub.Close()
		heartbeat("dev-c", "v1.2.1")
		Eventually(func() bool { d, _ := svc.Device(ctx, "dev-c"); return d.Online }).Should(BeTrue())
		d, _ := svc.Device(ctx, "dev-c")
		Expect(d.AgentVersion.String()).To(Equal("v1.2.1"), "the heartbeat's version wins over the stored status")
		Eventually(sub.Drain).Should(ContainElement(Change{KindDevice, "dev-c"}))

		// Malformed values are skipped, and the watch keeps going.
		_, err := kvHB.Put(ctx, "dev-b", []byte(`{"v":1,"av":"not-a-version","q":1}`))
		Expect(err).NotTo(HaveOccurred())
		info, _ := core.DeviceInfo{Device: "dev-a", AgentVersion: core.MustParseVersion("v1.3.0"),
			Inventory: core.Inventory{Hostname: "gw-a", Arch: "arm64"}}.Encode()
		_, err = kvInf.Put(ctx, core.DeviceInfoKey("dev-a"), info)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() string { d, _ := svc.Device(ctx, "dev-a"); return d.Inventory.Hostname }).Should(Equal("gw-a"))
		d, _ = svc.Device(ctx, "dev-b")
		Expect(d.Online).To(BeFalse())

		clock.Set(time.Minute)
		Eventually(func() bool { d, _ := svc.Device(ctx, "dev-c"); return d.Online }).Should(BeFalse())
		Eventually(sub.Drain, 10*time.Second).Should(ContainElement(Change{KindDevice, "dev-c"}), "going offline is a live update too")
	})

	It("blacklists by patching spec.blacklisted", func() {
		d, err := svc.SetBlacklisted(ctx, "dev-b", true)
		Expect(err).NotTo(HaveOccurred())
		Expect(d.Blacklisted).To(BeTrue())
		var obj fleet.Device
		Expect(kube.Get(ctx, client.ObjectKey{Namespace: testNS, Name: "dev-b"}, &obj)).To(Succeed())
		Expect(obj.Spec.Blacklisted).To(BeTrue())
		_, err = svc.SetBlacklisted(ctx, "nope", true)
		Expect(errors.Is(err, ErrNotFound)).To(BeTrue())
	})

	It("pauses and resumes an agent rollout by patching spec.rollout.paused", func() {
		r, err := svc.SetRolloutPaused(ctx, "agent-v1-3", true)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.Paused).To(BeTrue())
		var obj fleet.AgentRollout
		Expect(kube.Get(ctx, client.ObjectKey{Namespace: testNS, Name: "agent-v1-3"}, &obj)).To(Succeed())
		Expect(obj.Spec.Rollout.Paused).To(BeTrue())
		_, err = svc.SetRolloutPaused(ctx, "agent-v1-3", false)
		Expect(err).NotTo(HaveOccurred())
		Expect(kube.Get(ctx, client.ObjectKey{Namespace: testNS, Name: "agent-v1-3"}, &obj)).To(Succeed())
		Expect(obj.Spec.Rollout.Paused).To(BeFalse())

		detail, err := svc.Rollout(ctx, "agent-v1-3")
		Expect(err).NotTo(HaveOccurred())
		Expect(detail.Waves).To(HaveLen(2))
		Expect(detail.ByPhase).To(Equal([]Count{{"Verifying", 1}, {"RolledBack", 1}, {"Succeeded", 1}}))
	})

	It("pings and tails logs over device commands, with typed failures", func() {
		sub, err := nc.Subscribe(core.CommandSubscription("dev-a"), func(m *nats.Msg) {
			_, verb, _ := core.ParseCommandSubject(m.Subject)
			req, err := core.DecodeCommandRequest(verb, m.Data)
			var reply core.CommandReply
			switch {
			case err != nil:
				reply = core.ErrorReply(verb, "", core.ErrCodeBadRequest, "%v", err)
			case verb == core.VerbPing:
				reply = core.CommandReply{Verb: verb, Ping: &core.PingResult{Device: "dev-a", AgentVersion: core.MustParseVersion("v1.3.0"), UptimeSec: 42}}
			default:
				reply = core.CommandReply{Verb: verb, Logs: &core.LogsResult{Lines: []string{"line for " + req.Logs.Deployment}}}
			}
			b, _ := reply.Encode()
			_ = m.Respond(b)
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(sub.Unsubscribe)

		p, err := svc.Ping(ctx, "dev-a")
		Expect(err).NotTo(HaveOccurred())
		Expect(p.UptimeSec).To(Equal(uint32(42)))
		l, err := svc.Logs(ctx, "dev-a", core.LogsArgs{Deployment: "proxy", Lines: 10})
		Expect(err).NotTo(HaveOccurred())
		Expect(l.Lines).To(Equal([]string{"line for proxy"}))

		_, err = svc.Ping(ctx, "dev-b")
		Expect(errors.Is(err, core.ErrOffline)).To(BeTrue(), "no agent subscribed is offline, got %v", err)
		_, err = svc.Ping(ctx, "nope")
		Expect(errors.Is(err, ErrNotFound)).To(BeTrue())
	})

	It("serves the dashboard pages over the real service", func() {
		srv, err := NewServer(Options{Service: svc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		Expect(err).NotTo(HaveOccurred())
		ts := httptest.NewServer(srv)
		DeferCleanup(ts.Close)
		for path, want := range map[string]string{
			"/":                        "agent-v1-3",
			"/devices?phase=Verifying": "dev-c",
			"/devices/dev-b":           "CutoverTimeout",
			"/deployments/proxy":       "dev-b",
			"/rollouts/agent-v1-3":     `data-wave="2"`,
		} {
			resp, err := http.Get(ts.URL + path)
			Expect(err).NotTo(HaveOccurred())
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(200), path)
			Expect(strings.Contains(string(body), want)).To(BeTrue(), "%s lacks %q", path, want)
		}
		resp, err := http.Get(ts.URL + "/devices/nope")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(404))
	})
})
