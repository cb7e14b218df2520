//go:build envtest

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/internal/natstest"
	fleet "github.com/flotilla-fleet/flotilla/operator/api/v1alpha1"
	"github.com/flotilla-fleet/flotilla/operator/controller"
)

// The binary's own wiring (flags, kubeconfig, leader election, probes,
// metrics) against a real kube-apiserver and an embedded nats-server.

func TestRunEnvtest(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "flotilla-operator run (envtest)")
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var _ = It("runs with leader election, turns ready when converged, places and exports metrics", func(ctx SpecContext) {
	dir := os.Getenv("FLOTILLA_ENVTEST_ASSETS")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "flotilla", "envtest", "k8s-1.37.2-etcd-3.6.16")
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "operator", "config", "crd")},
		ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: dir, ControlPlaneStartTimeout: 2 * time.Minute}
	cfg, err := env.Start()
	Expect(err).NotTo(HaveOccurred(), "envtest binaries in %s (make envtest-assets)", dir)
	DeferCleanup(env.Stop)
	kubeconfig := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(kubeconfig, env.KubeConfig, 0o600)).To(Succeed())

	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: GinkgoT().TempDir(), NoLog: true, NoSigs: true})
	Expect(err).NotTo(HaveOccurred())
	ns.Start()
	DeferCleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	Expect(ns.ReadyForConnections(10 * time.Second)).To(BeTrue())

	scheme, err := controller.Scheme()
	Expect(err).NotTo(HaveOccurred())
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}})).To(Succeed())
	Expect(k8s.Create(ctx, &fleet.Device{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "edge-1",
		Labels: map[string]string{"site": "a"}}})).To(Succeed())

	metrics, health := freeAddr(), freeAddr()
	f, err := parseRunFlags([]string{"--nats-url", ns.ClientURL(), "--kubeconfig", kubeconfig, "--namespace", "fleet",
		"--metrics-bind-address", metrics, "--health-probe-bind-address", health, "--leader-elect", "--tick", "100ms"})
	Expect(err).NotTo(HaveOccurred())
	f.skipNameValidation = true // specs run the operator more than once in this process
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(runCtx, f, slog.New(slog.NewTextHandler(GinkgoWriter, nil))) }()
	DeferCleanup(func() { cancel(); Eventually(done).WithTimeout(30 * time.Second).Should(Receive()) })

	Eventually(func() int { c, _ := httpGet("http://" + health + "/readyz"); return c }).
		WithTimeout(60*time.Second).Should(Equal(http.StatusOK), "readyz never turned ready (leader election + convergence)")
	Expect(k8s.Create(ctx, &fleet.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "web"},
		Spec: fleet.DeploymentSpec{TargetSelector: fleet.LabelSelector{MatchLabels: fleet.MatchLabelsOf(map[string]string{"site": "a"})},
			Workload: fleet.WorkloadTemplate{Name: "web", Version: "1.0"}}})).To(Succeed())
	nc, err := nats.Connect(ns.ClientURL())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	js, err := jetstream.New(nc)
	Expect(err).NotTo(HaveOccurred())
	kv, err := js.KeyValue(ctx, core.BucketDesiredState)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() error { _, err := kv.Get(ctx, "edge-1.web"); return err }).WithTimeout(20 * time.Second).Should(Succeed())
	Eventually(func() string {
		_, body := httpGet("http://" + metrics + "/metrics")
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "flotilla_operator_converged ") || strings.HasPrefix(l, "flotilla_operator_kv_operations_total{op=\"put\",result=\"ok\"} ") {
				fmt.Fprintln(GinkgoWriter, l)
			}
		}
		return body
	}).WithTimeout(20 * time.Second).Should(And(ContainSubstring("flotilla_operator_converged 1"),
		MatchRegexp(`flotilla_operator_kv_operations_total\{op="put",result="ok"\} [1-9]`)))
}, NodeTimeout(5*time.Minute))

var _ = It("stays up while NATS is unreachable, reports it in readyz and metrics, and places once NATS appears", func(ctx SpecContext) {
	dir := os.Getenv("FLOTILLA_ENVTEST_ASSETS")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "flotilla", "envtest", "k8s-1.37.2-etcd-3.6.16")
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "operator", "config", "crd")},
		ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: dir, ControlPlaneStartTimeout: 2 * time.Minute}
	cfg, err := env.Start()
	Expect(err).NotTo(HaveOccurred(), "envtest binaries in %s (make envtest-assets)", dir)
	DeferCleanup(env.Stop)
	kubeconfig := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(kubeconfig, env.KubeConfig, 0o600)).To(Succeed())
	scheme, err := controller.Scheme()
	Expect(err).NotTo(HaveOccurred())
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}})).To(Succeed())
	Expect(k8s.Create(ctx, &fleet.Device{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "edge-1",
		Labels: map[string]string{"site": "a"}}})).To(Succeed())
	Expect(k8s.Create(ctx, &fleet.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "web"},
		Spec: fleet.DeploymentSpec{TargetSelector: fleet.LabelSelector{MatchLabels: fleet.MatchLabelsOf(map[string]string{"site": "a"})},
			Workload: fleet.WorkloadTemplate{Name: "web", Version: "1.0"}}})).To(Succeed())

	port, err := natstest.FreePort()
	Expect(err).NotTo(HaveOccurred())
	srv := natstest.NewStopped(GinkgoT(), port) // nothing listens yet
	metricsAddr, health := freeAddr(), freeAddr()
	f, err := parseRunFlags([]string{"--nats-url", srv.URL(), "--kubeconfig", kubeconfig, "--namespace", "fleet",
		"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", health, "--tick", "100ms"})
	Expect(err).NotTo(HaveOccurred())
	f.skipNameValidation = true // specs run the operator more than once in this process
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(runCtx, f, slog.New(slog.NewTextHandler(GinkgoWriter, nil))) }()
	DeferCleanup(func() { cancel(); Eventually(done).WithTimeout(30 * time.Second).Should(Receive()) })

	Eventually(func() string { _, body := httpGet("http://" + health + "/readyz?verbose"); return body }).
		WithTimeout(60 * time.Second).Should(ContainSubstring("[-]nats failed"))
	Eventually(func() string { _, body := httpGet("http://" + metricsAddr + "/metrics"); return body }).
		WithTimeout(30 * time.Second).Should(ContainSubstring("flotilla_operator_nats_connected 0"))
	// Well past the 5 s after which it used to exit with status 1.
	Consistently(done).WithTimeout(8*time.Second).ShouldNot(Receive(), "the operator exited while NATS was down")
	c, _ := httpGet("http://" + health + "/readyz")
	Expect(c).To(Equal(http.StatusInternalServerError))

	Expect(srv.Start()).To(Succeed())
	Eventually(func() int { c, _ := httpGet("http://" + health + "/readyz"); return c }).
		WithTimeout(60*time.Second).Should(Equal(http.StatusOK), "readyz never turned ready after NATS appeared")
	nc, err := nats.Connect(srv.URL())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	js, err := jetstream.New(nc)
	Expect(err).NotTo(HaveOccurred())
	kv, err := js.KeyValue(ctx, core.BucketDesiredState)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() error { _, err := kv.Get(ctx, "edge-1.web"); return err }).WithTimeout(30 * time.Second).Should(Succeed())
	Eventually(func() string { _, body := httpGet("http://" + metricsAddr + "/metrics"); return body }).
		WithTimeout(30 * time.Second).Should(ContainSubstring("flotilla_operator_nats_connected 1"))
}, NodeTimeout(5*time.Minute))
