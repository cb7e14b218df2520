//go:build envtest

package controller_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/flotilla-fleet/flotilla/operator/controller"
	"github.com/flotilla-fleet/flotilla/operator/natsadapter"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/operator/runner"
)

// The suite runs a real kube-apiserver and etcd (built once per machine by
// hack/envtest-binaries.sh; make envtest-assets) and an embedded
// nats-server with JetStream, and runs the operator exactly as
// cmd/flotilla-operator wires it.

func TestEnvtest(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "operator envtest suite")
}

var (
	testEnv  *envtest.Environment
	restCfg  *rest.Config
	k8s      client.Client
	natsSrv  *natsserver.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	buckets  map[string]jetstream.KeyValue
	suiteCtx context.Context
)

func assetsDir() string {
	if d := os.Getenv("FLOTILLA_ENVTEST_ASSETS"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	cache := os.Getenv("FLOTILLA_CACHE")
	if cache == "" {
		cache = filepath.Join(home, ".cache", "flotilla")
	}
	return filepath.Join(cache, "envtest", "k8s-1.37.2-etcd-3.6.16")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	suiteCtx = context.Background()
	// The build machine is shared and loaded: give every Eventually room.
	SetDefaultEventuallyTimeout(15 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelWarn})))
	dir := assetsDir()
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			Fail(fmt.Sprintf("envtest binary %s missing in %s: run `make envtest-assets` (builds it from Go modules once per machine)", bin, dir))
		}
	}
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:        []string{filepath.Join("..", "config", "crd")},
		ErrorIfCRDPathMissing:    true,
		BinaryAssetsDirectory:    dir,
		ControlPlaneStartTimeout: 2 * time.Minute,
	}
	start := time.Now()
	var err error
	restCfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	took := time.Since(start)
	AddReportEntry("envtest start-up", took.String())
	fmt.Fprintf(GinkgoWriter, "envtest (kube-apiserver + etcd + CRDs) started in %s\n", took)
	writeOut("envtest-startup.txt", fmt.Sprintf("%s\n", took))
	DeferCleanup(func() { Expect(testEnv.Stop()).To(Succeed()) })

	scheme, err := controller.Scheme()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(restCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	natsSrv, err = natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: GinkgoT().TempDir(), NoLog: true, NoSigs: true})
	Expect(err).NotTo(HaveOccurred())
	natsSrv.Start()
	DeferCleanup(func() { natsSrv.Shutdown(); natsSrv.WaitForShutdown() })
	Expect(natsSrv.ReadyForConnections(10*time.Second)).To(BeTrue(), "nats-server did not start")
	nc, err = nats.Connect(natsSrv.ClientURL())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	ad, err := natsadapter.New(ctx, nc, natsadapter.Options{CreateBuckets: true})
	Expect(err).NotTo(HaveOccurred())
	buckets = map[string]jetstream.KeyValue{}
	for _, b := range []string{"desired-state", "device-info", "device-state", "device-heartbeat", "agent-upgrade", "agent-upgrade-status"} {
		buckets[b] = ad.KV(b)
	}
}, NodeTimeout(10*time.Minute))

// writeOut saves a measurement under _out/operator for the report.
func writeOut(name, content string) {
	dir := filepath.Join("..", "..", "_out", "operator")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
}

// operator is one running operator (manager + runner) in one namespace.
type operator struct {
	runner *runner.Runner
	cancel context.CancelFunc
	done   chan error
	stops  *int
}

var nsCounter int

// newNamespace creates a fresh namespace for one spec.
func newNamespace() string {
	nsCounter++
	name := fmt.Sprintf("fleet-%d-%d", GinkgoParallelProcess(), nsCounter)
	Expect(k8s.Create(suiteCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
	return name
}

// startOperator runs an operator for ns with test-friendly timings; it is
// stopped when the spec ends.
func startOperator(ns string, cfg opcore.Config) *operator {
	scheme, err := controller.Scheme()
	Expect(err).NotTo(HaveOccurred())
	mgr, err := ctrl.NewManager(restCfg, manager.Options{
		Scheme:                 scheme,
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	log := slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := controller.New(mgr, ns, log)
	Expect(err).NotTo(HaveOccurred())
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	cfg.CreateDevices = true
	r := runner.New(runner.Options{NATS: nc, Store: store, Core: cfg, Logger: log, CommandTimeout: 2 * time.Second})
	Expect(mgr.Add(manager.RunnableFunc(r.Run))).To(Succeed())
	ctx, cancel := context.WithCancel(suiteCtx)
	op := &operator{runner: r, cancel: cancel, done: make(chan error, 1)}
	go func() {
		defer GinkgoRecover()
		op.done <- mgr.Start(ctx)
	}()
	DeferCleanup(op.stop)
	Eventually(r.Converged).WithTimeout(30*time.Second).Should(BeTrue(), "operator did not converge")
	return op
}

func (op *operator) stop() {
	if op.cancel == nil {
		return
	}
	op.cancel()
	op.cancel = nil
	Eventually(op.done).WithTimeout(30 * time.Second).Should(Receive())
}
