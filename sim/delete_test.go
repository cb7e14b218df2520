package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

const deletions = `name: del
duration: 2h
fleet: {devices: 8, labels: {site: [a, b]}, agent_version: v1.0.0}
operator: {create_devices: CREATE}
deployments:
  - {name: web, selector: {site: a}, workload: {name: web, version: "1.0"}}
  - {name: metrics, workload: {name: metrics, version: "0.9"}}
steps:
  - {at: 1m, upgrade_agent: {name: ring, version: v1.1.0, strategy: {max_unavailable: 1}}}
  - {at: 2m, delete_deployment: web}
  - {at: 2m, blacklist: {names: [dev-3]}}
  - {at: 3m, delete_devices: {names: [dev-2, dev-3]}}
  - {at: 4m, delete_agent_rollout: ring}
expect:
  converged_within: 60m
`

func runDeletions(t *testing.T, create bool) *World {
	t.Helper()
	src := strings.Replace(deletions, "CREATE", map[bool]string{true: "true", false: "false"}[create], 1)
	w, err := New(mustScenario(t, src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := w.Run()
	if !r.Passed {
		t.Fatalf("violations %v, expectations %v", r.Violations, r.Expectations)
	}
	return w
}

// A deleted Deployment goes through its finalizer: the operator deletes its
// desired state from every device, the devices stop its workload, then the
// object leaves the store.
func TestDeletedDeploymentLeavesEveryDevice(t *testing.T) {
	w := runDeletions(t, true)
	if w.store.deployment("web") != nil {
		t.Fatal("web is still in the store: the finalizer was never removed")
	}
	desired, _ := w.srv.Bucket(core.BucketDesiredState)
	for _, d := range w.devs {
		if _, err := desired.Get(core.DesiredStateKey(d.name, "web")); err == nil {
			t.Errorf("%s: desired state of the deleted deployment is still in KV", d.name)
		}
		for _, wl := range d.workloads {
			if wl.dep == "web" {
				t.Errorf("%s: still runs web", d.name)
			}
		}
		if _, err := desired.Get(core.DesiredStateKey(d.name, "metrics")); err != nil {
			t.Errorf("%s: lost the desired state of metrics: %v", d.name, err)
		}
	}
}

// A deleted AgentRollout starts no further device: with one device at a
// time and the rollout deleted early, most of the fleet stays on v1.0.0,
// the devices it started finish their attempt, and nothing waits for it.
func TestDeletedRolloutStartsNoFurtherDevice(t *testing.T) {
	w := runDeletions(t, true)
	if len(w.store.rollouts) != 0 || len(w.agentRollouts) != 0 {
		t.Fatalf("rollouts left: %d in the store, %v awaited", len(w.store.rollouts), w.agentRollouts)
	}
	upgraded := 0
	for _, d := range w.devs {
		if d.main != nil && d.main.version.Compare(v11) == 0 {
			upgraded++
		}
		if !d.disk.Runnable(d.disk.current) {
			t.Errorf("%s: current %s is not runnable", d.name, d.disk.current)
		}
	}
	if upgraded == 0 || upgraded == len(w.devs) {
		t.Fatalf("%d of %d devices upgraded; want the rollout stopped part-way", upgraded, len(w.devs))
	}
}

// A deleted Device that keeps reporting device-info gets a new Device
// object from the operator (CreateDevices, the production default), without
// the blacklist flag the old object had; without CreateDevices it stays
// placed by its device-info labels, with no object.
func TestDeletedDeviceComesBackFromDeviceInfo(t *testing.T) {
	w := runDeletions(t, true)
	if w.deletedDevs != 2 || w.recreatedDevs != 2 {
		t.Fatalf("deleted %d, created again %d; want 2 and 2", w.deletedDevs, w.recreatedDevs)
	}
	for _, name := range []string{"dev-2", "dev-3"} {
		o := w.store.byDevice[name]
		if o == nil || !o.made || o.rec.Blacklisted || o.rec.Labels["site"] == "" {
			t.Fatalf("%s after re-creation: %+v", name, o)
		}
	}

	w = runDeletions(t, false)
	if w.recreatedDevs != 0 || w.store.byDevice["dev-2"] != nil {
		t.Fatal("a Device object was created with create_devices off")
	}
	d := w.devs[2]
	if len(d.workloads) != 1 || d.workloads[0].dep != "metrics" {
		t.Fatalf("dev-2 without its object runs %+v; want metrics, placed by device-info", d.workloads)
	}
}

// The store's side of RemoveFinalizer and CreateDevice ignores what the
// real store ignores: a finalizer of a Deployment that is not deleting, a
// Device that exists, a name that is not in the fleet.
func TestObjectEffectsIgnoreWhatTheStoreIgnores(t *testing.T) {
	w, err := New(mustScenario(t, strings.Replace(deletions, "CREATE", "true", 1)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.op.start()
	w.objectEffect(opcore.RemoveFinalizer{Kind: opcore.KindDeployment, Name: "web"})
	w.objectEffect(opcore.CreateDevice{Name: "dev-1", Labels: map[string]string{"site": "z"}})
	w.objectEffect(opcore.CreateDevice{Name: "dev-99"})
	if w.store.deployment("web") == nil || w.store.byDevice["dev-1"].rec.Labels["site"] != "b" || w.recreatedDevs != 0 {
		t.Fatal("an effect the store must ignore changed it")
	}
}

// A Deployment deleted while the operator is down is still deleting when
// it comes back (the store keeps the object until the finalizer goes): the
// restarted core purges its desired state and releases the finalizer.
func TestDeploymentDeletedWhileTheOperatorIsDown(t *testing.T) {
	src := `name: del-down
duration: 2h
fleet: {devices: 4, agent_version: v1.0.0}
deployments:
  - {name: web, workload: {name: web, version: "1.0"}}
steps:
  - {at: 2m, delete_deployment: web}
faults:
  - {kind: operator-crash, at: 1m, down: 3m}
expect:
  converged_within: 30m
`
	w, err := New(mustScenario(t, src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.schedule()
	w.k.Run(3 * time.Minute)
	if d := w.store.deployment("web"); d == nil || !d.spec.Deleting {
		t.Fatalf("with the operator down the Deployment must stay, deleting: %+v", d)
	}
	w.k.Run(w.sc.Duration.D)
	r := w.result()
	if !r.Passed {
		t.Fatalf("violations %v, expectations %v", r.Violations, r.Expectations)
	}
	if w.store.deployment("web") != nil {
		t.Fatal("the restarted operator did not release the finalizer")
	}
	for _, d := range w.devs {
		if len(d.workloads) != 0 {
			t.Fatalf("%s still runs %+v", d.name, d.workloads)
		}
	}
}
