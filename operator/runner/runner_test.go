package runner_test

import (
	"context"
	"github.com/flotilla-fleet/flotilla/internal/natstest"
	"log/slog"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/natsadapter"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/operator/runner"
)

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The runner with the in-memory store: the operator without Kubernetes.
func TestRunnerWithMemStorePlacesAndAggregates(t *testing.T) {
	s := natstest.Start(t)
	nc, err := natsadapter.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	ad, err := natsadapter.New(ctx, nc, natsadapter.Options{CreateBuckets: true})
	if err != nil {
		t.Fatal(err)
	}
	store := runner.NewMemStore()
	store.PutDevice("d1", map[string]string{"site": "a"}, false)
	store.PutDevice("d2", map[string]string{"site": "b"}, false)
	r := runner.New(runner.Options{NATS: nc, Store: store, Core: opcore.Config{TickInterval: 50 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler), Metrics: runner.NewMetrics(nil)})
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "convergence", r.Converged)

	store.PutDeployment(opcore.DeploymentSpec{Name: "web", Selector: core.LabelSelector{MatchLabels: map[string]string{"site": "a"}},
		Workload: opcore.Workload{Name: "web", Version: "1.0"}})
	kv := ad.KV(core.BucketDesiredState)
	eventually(t, "d1.web in KV", func() bool { _, err := kv.Get(ctx, "d1.web"); return err == nil })
	if _, err := kv.Get(ctx, "d2.web"); err == nil {
		t.Fatal("d2 does not match but got a key")
	}
	b, _ := core.DeviceState{Device: "d1", Deployment: "web", Generation: 1, Phase: core.PhaseRunning, LastEventAt: 1}.Encode()
	if _, err := ad.KV(core.BucketDeviceState).Put(ctx, core.DeviceStateKey("d1", "web"), b); err != nil {
		t.Fatal(err)
	}
	eventually(t, "status counts", func() bool {
		d, _ := store.Deployment("web")
		return d.Status.Counts.Succeeded == 1 && d.Status.Counts.Total == 1
	})
	var phase opcore.Phase
	if err := r.Inspect(ctx, func(o *opcore.Operator) { phase = o.Phase() }); err != nil || phase != opcore.Converged {
		t.Fatalf("Inspect: %v %v", phase, err)
	}
	store.DeleteDeployment("web")
	eventually(t, "deployment released", func() bool { _, ok := store.Deployment("web"); return !ok })
	if _, err := kv.Get(ctx, "d1.web"); err == nil {
		t.Fatal("key survived the deployment")
	}
}
