package runner_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/internal/natstest"
	"github.com/flotilla-fleet/flotilla/operator/natsadapter"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/operator/runner"
)

func TestOutageSpecs(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "operator runner against a NATS server that goes away")
}

// outageEnv is one operator (runner + MemStore) against a nats-server the
// spec stops and starts, plus a separate client for looking at KV.
type outageEnv struct {
	srv    *natstest.Server
	store  *runner.MemStore
	r      *runner.Runner
	probe  *nats.Conn
	cancel context.CancelFunc
}

func startOutageEnv(serverUp bool) *outageEnv {
	port, err := natstest.FreePort()
	Expect(err).NotTo(HaveOccurred())
	e := &outageEnv{srv: natstest.NewStopped(GinkgoT(), port), store: runner.NewMemStore()}
	if serverUp {
		Expect(e.srv.Start()).To(Succeed())
	}
	nc, err := natsadapter.Connect(e.srv.URL(), nats.ReconnectWait(100*time.Millisecond))
	Expect(err).NotTo(HaveOccurred(), "Connect must not fail on a server that is down")
	DeferCleanup(nc.Close)
	e.store.PutDevice("d1", map[string]string{"site": "a"}, false)
	e.store.PutDevice("d2", map[string]string{"site": "a"}, false)
	e.r = runner.New(runner.Options{NATS: nc, Store: e.store, Core: opcore.Config{TickInterval: 50 * time.Millisecond},
		WriteTimeout: time.Second, Logger: slog.New(slog.DiscardHandler), Metrics: runner.NewMetrics(nil)})
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	done := make(chan error, 1)
	go func() { done <- e.r.Run(ctx) }()
	DeferCleanup(func() {
		cancel()
		Eventually(done, 30*time.Second).Should(Receive(MatchError(context.Canceled)))
	})
	return e
}

// kv opens a bucket over a probe connection (the server must be up).
func (e *outageEnv) kv(bucket string) jetstream.KeyValue {
	if e.probe == nil || e.probe.IsClosed() {
		nc, err := nats.Connect(e.srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(nc.Close)
		e.probe = nc
	}
	js, err := jetstream.New(e.probe)
	Expect(err).NotTo(HaveOccurred())
	var kv jetstream.KeyValue
	Eventually(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		kv, err = js.KeyValue(ctx, bucket)
		return err
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed())
	return kv
}

func hasKey(kv jetstream.KeyValue, key string) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := kv.Get(ctx, key)
		return err
	}
}

func webOn(site, version string, gen int64) opcore.DeploymentSpec {
	return opcore.DeploymentSpec{Name: "web", Generation: gen, Selector: core.LabelSelector{MatchLabels: map[string]string{"site": site}},
		Workload: opcore.Workload{Name: "web", Version: version, Runtime: core.RuntimeProcess}}
}

// inspectWithin asks the core a question and fails if it does not answer
// within d (the core's goroutine must never wait on NATS).
func inspectWithin(r *runner.Runner, d time.Duration) opcore.Phase {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var phase opcore.Phase
	Expect(r.Inspect(ctx, func(o *opcore.Operator) { phase = o.Phase() })).To(Succeed(), "the core did not answer within %s", d)
	return phase
}

var _ = Describe("an operator started while NATS is unreachable", func() {
	It("stays up, reports NATS disconnected and not ready, and places a Deployment once the server appears", func() {
		e := startOutageEnv(false)
		e.store.PutDeployment(webOn("a", "1.0", 1))
		Consistently(func() error { return e.r.Ready() }, 2*time.Second, 100*time.Millisecond).Should(MatchError("NATS disconnected"))
		Expect(e.r.Status().Connected).To(BeFalse())
		Expect(e.r.Converged()).To(BeFalse())
		Expect(inspectWithin(e.r, 2*time.Second)).To(Equal(opcore.Recovering))

		Expect(e.srv.Start()).To(Succeed())
		Eventually(e.r.Ready, 60*time.Second, 100*time.Millisecond).Should(Succeed())
		kv := e.kv(core.BucketDesiredState)
		Eventually(hasKey(kv, "d1.web"), 30*time.Second, 100*time.Millisecond).Should(Succeed())
		Eventually(hasKey(kv, "d2.web"), 30*time.Second, 100*time.Millisecond).Should(Succeed())
	})
})

var _ = Describe("an operator during a NATS outage", func() {
	It("keeps ticking and serving while writes wait, and the writes land when the server returns", func() {
		e := startOutageEnv(true)
		Eventually(e.r.Ready, 60*time.Second, 100*time.Millisecond).Should(Succeed())
		e.store.PutDeployment(webOn("a", "1.0", 1))
		kv := e.kv(core.BucketDesiredState)
		Eventually(hasKey(kv, "d1.web"), 30*time.Second, 100*time.Millisecond).Should(Succeed())

		e.srv.Stop()
		Eventually(func() bool { return e.r.Status().Connected }, 30*time.Second, 50*time.Millisecond).Should(BeFalse())
		Expect(e.r.Ready()).To(MatchError("NATS disconnected"))
		// A new version while NATS is down: the core plans it at once ...
		e.store.PutDeployment(webOn("a", "2.0", 2))
		Eventually(func() int { return e.r.Status().OutboxDepth }, 30*time.Second, 50*time.Millisecond).Should(Equal(2))
		// ... and keeps answering and ticking: status patches still reach the store.
		var worst time.Duration
		for i := 0; i < 10; i++ {
			t0 := time.Now()
			Expect(inspectWithin(e.r, 2*time.Second)).To(Equal(opcore.Converged))
			worst = max(worst, time.Since(t0))
			time.Sleep(100 * time.Millisecond)
		}
		GinkgoWriter.Printf("slowest Inspect during the outage, writes pending: %s\n", worst)
		Eventually(func() int64 {
			d, _ := e.store.Deployment("web")
			return d.Status.ObservedGeneration
		}, 30*time.Second, 50*time.Millisecond).Should(Equal(int64(2)))
		Expect(e.r.Status().OutboxDepth).To(Equal(2), "the writes are still pending")

		Expect(e.srv.Start()).To(Succeed())
		Eventually(func() int { return e.r.Status().OutboxDepth }, 60*time.Second, 100*time.Millisecond).Should(BeZero())
		kv = e.kv(core.BucketDesiredState)
		for _, key := range []string{"d1.web", "d2.web"} {
			Eventually(func() (string, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				en, err := kv.Get(ctx, key)
				if err != nil {
					return "", err
				}
				w, err := core.DecodeWorkloadSpec(en.Value())
				return w.Version, err
			}, 30*time.Second, 100*time.Millisecond).Should(Equal("2.0"), key)
		}
	})
})

var _ = Describe("an operator across a NATS server restart", func() {
	It("recreates its watches, so new KV entries reach the core promptly", func() {
		e := startOutageEnv(true)
		Eventually(e.r.Ready, 60*time.Second, 100*time.Millisecond).Should(Succeed())
		e.store.PutDeployment(webOn("a", "1.0", 1))
		Eventually(hasKey(e.kv(core.BucketDesiredState), "d1.web"), 30*time.Second, 100*time.Millisecond).Should(Succeed())

		Expect(e.srv.Restart(200 * time.Millisecond)).To(Succeed())
		Eventually(e.r.Ready, 30*time.Second, 50*time.Millisecond).Should(Succeed())
		restartedAt := time.Now()
		// An agent reports after the restart; the report must reach the core
		// (and the Deployment's status) well before nats.go would rebuild a
		// quiet watch by itself (about 17 s).
		b, err := core.DeviceState{Device: "d1", Deployment: "web", Generation: 1, Phase: core.PhaseRunning, LastEventAt: 1}.Encode()
		Expect(err).NotTo(HaveOccurred())
		kv := e.kv(core.BucketDeviceState)
		Eventually(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := kv.Put(ctx, core.DeviceStateKey("d1", "web"), b)
			return err
		}, 30*time.Second, 100*time.Millisecond).Should(Succeed())
		Eventually(func() int {
			d, _ := e.store.Deployment("web")
			return d.Status.Counts.Succeeded
		}, 60*time.Second, 50*time.Millisecond).Should(Equal(1))
		GinkgoWriter.Printf("report reached the core %s after the server came back\n", time.Since(restartedAt))
		Expect(e.r.Status().WatchRestarts).To(BeNumerically(">=", 6))
	})
})
