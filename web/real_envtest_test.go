//go:build envtest

package web

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	fleet "github.com/flotilla-fleet/flotilla/operator/api/v1alpha1"
)

// TestStartRealAgainstKubeAPIServer runs StartReal (kubeconfig, informer
// cache, patches) against a real kube-apiserver with the operator's CRDs.
func TestStartRealAgainstKubeAPIServer(t *testing.T) {
	dir := os.Getenv("FLOTILLA_ENVTEST_ASSETS")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "flotilla", "envtest", "k8s-1.37.2-etcd-3.6.16")
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "operator", "config", "crd")},
		ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: dir, ControlPlaneStartTimeout: 2 * time.Minute}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest with binaries in %s (make envtest-assets): %v", dir, err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	scheme, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	kube, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	const ns = "fleet-web"
	if err := kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dev-1", "dev-2"} {
		if err := kube.Create(ctx, &fleet.Device{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{"site": "berlin"}}}); err != nil {
			t.Fatal(err)
		}
	}
	r := &fleet.AgentRollout{ObjectMeta: metav1.ObjectMeta{Name: "agent-v2", Namespace: ns},
		Spec: fleet.AgentRolloutSpec{Version: "v2.0.0",
			Artifact: fleet.ArtifactRef{URL: "https://example.invalid/a", SHA256: "0000000000000000000000000000000000000000000000000000000000000000", Size: 1}}}
	if err := kube.Create(ctx, r); err != nil {
		t.Fatalf("create agent rollout: %v", err)
	}

	svc, stop, err := StartReal(ctx, RealOptions{Kubeconfig: kubeconfig, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	sub := svc.Changes().Subscribe()
	defer sub.Close()

	p, err := svc.ListDevices(ctx, DeviceQuery{})
	if err != nil || p.Total != 2 {
		t.Fatalf("list after sync: %+v %v", p, err)
	}

	// A status change made by someone else (the operator) arrives as a
	// live update through the informer.
	var d fleet.Device
	if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: "dev-2"}, &d); err != nil {
		t.Fatal(err)
	}
	d.Status.CurrentVersion = "v1.9.0"
	d.Status.Upgrade.Phase = "Verifying"
	if err := kube.Status().Update(ctx, &d); err != nil {
		t.Fatalf("update status: %v", err)
	}
	waitFor(t, "dev-2 change published", func() bool {
		for _, c := range sub.Drain() {
			if c == (Change{KindDevice, "dev-2"}) {
				return true
			}
		}
		return false
	})
	got, err := svc.Device(ctx, "dev-2")
	if err != nil || got.AgentVersion.String() != "v1.9.0" || got.Upgrade.Phase != "Verifying" {
		t.Fatalf("dev-2 after status update: %+v %v", got, err)
	}

	// Actions patch the objects in the API server.
	if _, err := svc.SetBlacklisted(ctx, "dev-1", true); err != nil {
		t.Fatal(err)
	}
	if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: "dev-1"}, &d); err != nil || !d.Spec.Blacklisted {
		t.Fatalf("dev-1 spec.blacklisted not set: %+v %v", d.Spec, err)
	}
	if _, err := svc.SetRolloutPaused(ctx, "agent-v2", true); err != nil {
		t.Fatal(err)
	}
	if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: "agent-v2"}, r); err != nil || !r.Spec.Rollout.Paused {
		t.Fatalf("agent-v2 spec.rollout.paused not set: %+v %v", r.Spec.Rollout, err)
	}
	waitFor(t, "the cache sees the blacklist", func() bool {
		d, _ := svc.Device(ctx, "dev-1")
		return d.Blacklisted
	})
	if _, err := svc.Ping(ctx, "dev-1"); err == nil {
		t.Error("ping without NATS succeeded")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
