package opcore

import (
	"reflect"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

func TestRecoveringWritesNothingUntilCachesSyncedAndKVReplayed(t *testing.T) {
	h := newHarness(t, Config{})
	h.device("d1", map[string]string{"site": "a"})
	h.deployment(web("web", map[string]string{"site": "a"}))
	// A stale key from before the restart.
	h.step(KVPut{Bucket: core.BucketDesiredState, Key: "d9.gone", Value: []byte(`{}`)})
	for _, b := range watchedBuckets[:len(watchedBuckets)-1] {
		h.step(KVReplayed{Bucket: b})
	}
	h.step(CachesSynced{})
	if out := h.tick(); len(puts(out, core.BucketDesiredState))+len(deletes(out, core.BucketDesiredState)) > 0 {
		t.Fatalf("wrote KV while Recovering: %v", out)
	}
	if h.op.Phase() != Recovering {
		t.Fatalf("phase %s before the last bucket replayed", h.op.Phase())
	}
	out := h.step(KVReplayed{Bucket: watchedBuckets[len(watchedBuckets)-1]})
	if h.op.Phase() != Converged {
		t.Fatal("did not converge")
	}
	eqKeys(t, "orphans purged at convergence", deletes(out, core.BucketDesiredState), "d9.gone")
	if len(notices(out, "Converged")) != 1 {
		t.Fatal("no Converged notice")
	}
	eqKeys(t, "placement after convergence", puts(h.tick(), core.BucketDesiredState), "d1.web")
}

func TestPlacementWritesKeysForMatchingDevicesOnlyAndIsByteDeterministic(t *testing.T) {
	run := func() []Effect {
		h := newHarness(t, Config{})
		h.converge()
		h.device("d1", map[string]string{"site": "a", "tier": "edge"})
		h.device("d2", map[string]string{"site": "b"})
		h.device("d3", map[string]string{"site": "a"})
		spec := web("web", nil)
		spec.Selector = core.LabelSelector{MatchLabels: map[string]string{"site": "a"},
			MatchExpressions: []core.SelectorRequirement{{Key: "tier", Operator: core.OpIn, Values: []string{"edge"}}}}
		h.deployment(spec)
		return h.tick()
	}
	out := run()
	eqKeys(t, "keys", puts(out, core.BucketDesiredState), "d1.web")
	want, _ := core.WorkloadSpec{Deployment: "web", Generation: 1, Name: "web", Version: "1.0", Runtime: core.RuntimeProcess}.Encode()
	for _, e := range out {
		if p, ok := e.(PutKV); ok && string(p.Value) != string(want) {
			t.Fatalf("value %s, want %s", p.Value, want)
		}
	}
	if !reflect.DeepEqual(out, run()) {
		t.Fatal("two cores fed the same inputs disagree")
	}
}

func TestLabelChangeMovesKeys(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	h.device("d1", map[string]string{"site": "a"})
	h.device("d2", map[string]string{"site": "b"})
	h.deployment(web("web", map[string]string{"site": "a"}))
	eqKeys(t, "initial", puts(h.tick(), core.BucketDesiredState), "d1.web")
	out := h.device("d1", map[string]string{"site": "b"})
	eqKeys(t, "deleted when d1 stops matching", deletes(out, core.BucketDesiredState), "d1.web")
	out = h.device("d2", map[string]string{"site": "a"})
	out = append(out, h.tick()...)
	eqKeys(t, "written when d2 starts matching", puts(out, core.BucketDesiredState), "d2.web")
	if _, ok := h.op.DesiredValue("d1.web"); ok {
		t.Fatal("d1.web still in the view")
	}
}

func TestBlacklistRemovesKeysAndBlocksNewOnes(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	h.device("d1", map[string]string{"site": "a"})
	h.deployment(web("web", map[string]string{"site": "a"}))
	h.tick()
	out := h.step(DeviceUpsert{Device: DeviceRecord{Name: "d1", Labels: map[string]string{"site": "a"}, Blacklisted: true}})
	eqKeys(t, "deleted on blacklist", deletes(out, core.BucketDesiredState), "d1.web")
	h.deployment(DeploymentSpec{Name: "web2", Generation: 1, Selector: core.LabelSelector{},
		Workload: Workload{Name: "w", Version: "2"}})
	eqKeys(t, "nothing for a blacklisted device", puts(h.tick(), core.BucketDesiredState))
	st, _ := h.op.DeviceStatus("d1")
	if !cond(st.Conditions, CondBlacklisted).Status {
		t.Fatal("Blacklisted condition not set")
	}
	out = h.device("d1", map[string]string{"site": "a"})
	out = append(out, h.tick()...)
	eqKeys(t, "placed again when un-blacklisted", puts(out, core.BucketDesiredState), "d1.web", "d1.web2")
}

func TestDeletingDeploymentPurgesKeysThenReleasesFinalizer(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	h.device("d1", nil)
	h.device("d2", nil)
	spec := web("web", nil)
	h.deployment(spec)
	h.tick()
	spec.Deleting = true
	out := h.deployment(spec)
	eqKeys(t, "deleted", deletes(out, core.BucketDesiredState), "d1.web", "d2.web")
	last := -1
	for i, e := range out {
		if _, ok := e.(RemoveFinalizer); ok {
			last = i
		}
		if _, ok := e.(DeleteKV); ok && last >= 0 {
			t.Fatal("finalizer released before every key was deleted")
		}
	}
	if last < 0 {
		t.Fatal("no RemoveFinalizer")
	}
	if h.op.DesiredKeys() != 0 {
		t.Fatalf("%d keys left", h.op.DesiredKeys())
	}
}

func TestDeletedDeploymentWhileDownIsPurgedAsOrphan(t *testing.T) {
	h := newHarness(t, Config{})
	h.device("d1", nil)
	h.deployment(web("keep", nil))
	keep, _ := core.WorkloadSpec{Deployment: "keep", Generation: 1, Name: "web", Version: "1.0", Runtime: core.RuntimeProcess}.Encode()
	h.step(KVPut{Bucket: core.BucketDesiredState, Key: "d1.keep", Value: keep})
	h.step(KVPut{Bucket: core.BucketDesiredState, Key: "d1.old", Value: keep})
	h.step(KVPut{Bucket: core.BucketDesiredState, Key: "d2.keep", Value: keep}) // unknown device
	out := h.converge()
	eqKeys(t, "orphans", deletes(out, core.BucketDesiredState), "d1.old", "d2.keep")
	eqKeys(t, "the live key is not rewritten", puts(h.tick(), core.BucketDesiredState))
}

func TestAggregationCountsEqualDeviceStatesAfterFlush(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	for _, d := range []string{"d1", "d2", "d3", "d4", "d5"} {
		h.device(d, map[string]string{"app": "web"})
	}
	h.deployment(web("web", map[string]string{"app": "web"}))
	h.tick()
	h.report("d1", "web", 1, core.PhaseRunning, "")
	h.report("d2", "web", 1, core.PhaseFailed, "exit status 3")
	h.report("d3", "web", 1, core.PhaseApplying, "")
	h.report("d4", "web", 0, core.PhaseRunning, "") // stale generation
	out := h.tick()
	var patched *DeploymentStatus
	for _, e := range out {
		if p, ok := e.(PatchDeploymentStatus); ok && p.Name == "web" {
			patched = &p.Status
		}
	}
	if patched == nil {
		t.Fatal("no status patch after the tick")
	}
	c := patched.Counts
	want := DeploymentCounts{Total: 5, Succeeded: 1, Failed: 1, Pending: 1, Unreported: 2}
	if c != want {
		t.Fatalf("counts %+v, want %+v", c, want)
	}
	if c.Total != c.Succeeded+c.Failed+c.Pending+c.Unreported+c.Waiting {
		t.Fatal("counts do not add up")
	}
	if patched.LastError != "d2: exit status 3" {
		t.Fatalf("lastError %q", patched.LastError)
	}
	if !cond(patched.Conditions, CondDegraded).Status || cond(patched.Conditions, CondAvailable).Status ||
		!cond(patched.Conditions, CondProgressing).Status {
		t.Fatalf("conditions %+v", patched.Conditions)
	}
	for _, d := range []string{"d2", "d3", "d4", "d5"} {
		h.report(d, "web", 1, core.PhaseRunning, "")
	}
	h.tick()
	s := h.depStatus("web")
	if !cond(s.Conditions, CondAvailable).Status || cond(s.Conditions, CondDegraded).Status || cond(s.Conditions, CondProgressing).Status {
		t.Fatalf("after every device runs: %+v", s.Conditions)
	}
	if out := h.tick(); len(out) != 0 {
		t.Fatalf("a tick with nothing dirty emitted %v", out)
	}
}

func TestWavesStartTheNextWaveOnlyWhenTheLastIsDone(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	for _, d := range []string{"d1", "d2", "d3", "d4"} {
		h.device(d, nil)
	}
	spec := web("web", nil)
	spec.Rollout = Strategy{Waves: []Amount{{Value: 1}, {Value: 50, Percent: true}}}
	h.deployment(spec)
	eqKeys(t, "wave 1", puts(h.tick(), core.BucketDesiredState), "d1.web")
	eqKeys(t, "wave 1 not done", puts(h.tick(), core.BucketDesiredState))
	h.report("d1", "web", 1, core.PhaseRunning, "")
	eqKeys(t, "wave 2 (50% of 4)", puts(h.tick(), core.BucketDesiredState), "d2.web", "d3.web")
	h.report("d2", "web", 1, core.PhaseRunning, "")
	eqKeys(t, "wave 2 half done", puts(h.tick(), core.BucketDesiredState))
	h.report("d3", "web", 1, core.PhaseFailed, "boom")
	eqKeys(t, "the rest forms a final wave", puts(h.tick(), core.BucketDesiredState), "d4.web")
	s := h.depStatus("web")
	if len(s.Waves) != 3 || s.Waves[0].Phase != WaveComplete || s.Waves[1].Phase != WaveComplete || s.Waves[2].Phase != WaveInProgress {
		t.Fatalf("waves %+v", s.Waves)
	}
}

func TestMaxUnavailableBoundsDevicesInFlight(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	for _, d := range []string{"d1", "d2", "d3", "d4", "d5"} {
		h.device(d, nil)
	}
	spec := web("web", nil)
	spec.Rollout = Strategy{MaxUnavailable: Amount{Value: 2}}
	h.deployment(spec)
	eqKeys(t, "first two", puts(h.tick(), core.BucketDesiredState), "d1.web", "d2.web")
	h.report("d1", "web", 1, core.PhaseRunning, "")
	eqKeys(t, "one slot freed", puts(h.tick(), core.BucketDesiredState), "d3.web")
}

func TestFailureThresholdPausesRollout(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	for _, d := range []string{"d1", "d2", "d3", "d4"} {
		h.device(d, nil)
	}
	spec := web("web", nil)
	spec.Rollout = Strategy{MaxUnavailable: Amount{Value: 1}, FailureThreshold: &Amount{Value: 0}}
	h.deployment(spec)
	h.tick()
	h.report("d1", "web", 1, core.PhaseFailed, "crash")
	out := h.tick()
	eqKeys(t, "no start past the threshold", puts(out, core.BucketDesiredState))
	s := h.depStatus("web")
	if p := cond(s.Conditions, CondPaused); !p.Status || p.Reason != ReasonFailureThreshold {
		t.Fatalf("paused condition %+v", p)
	}
	if len(notices(out, ReasonFailureThreshold)) != 1 {
		t.Fatal("no notice when the rollout paused")
	}
	spec.Generation = 2
	spec.Rollout.FailureThreshold = &Amount{Value: 1}
	h.deployment(spec)
	h.report("d1", "web", 2, core.PhaseRunning, "")
	if got := puts(h.tick(), core.BucketDesiredState); len(got) != 1 {
		t.Fatalf("after raising the threshold: %v", got)
	}
}

func TestManualPauseAndResume(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	h.device("d1", nil)
	spec := web("web", nil)
	spec.Rollout.Paused = true
	h.deployment(spec)
	eqKeys(t, "paused", puts(h.tick(), core.BucketDesiredState))
	if c := cond(h.depStatus("web").Conditions, CondPaused); !c.Status || c.Reason != ReasonManualPause {
		t.Fatalf("paused %+v", c)
	}
	spec.Rollout.Paused = false
	spec.Generation = 2
	h.deployment(spec)
	eqKeys(t, "resumed", puts(h.tick(), core.BucketDesiredState), "d1.web")
}

func TestNewGenerationRollsOutAndOldReportsCountAsUnreported(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	h.device("d1", nil)
	spec := web("web", nil)
	h.deployment(spec)
	h.tick()
	h.report("d1", "web", 1, core.PhaseRunning, "")
	spec.Generation, spec.Workload.Version = 2, "2.0"
	h.deployment(spec)
	out := h.tick()
	eqKeys(t, "rewritten", puts(out, core.BucketDesiredState), "d1.web")
	v, _ := h.op.DesiredValue("d1.web")
	w, err := core.DecodeWorkloadSpec(v)
	if err != nil || w.Generation != 2 || w.Version != "2.0" {
		t.Fatalf("value %s (%v)", v, err)
	}
	if c := h.depStatus("web").Counts; c.Unreported != 1 || c.Succeeded != 0 {
		t.Fatalf("counts %+v", c)
	}
}

func TestInvalidDeploymentIsReportedAndPlacesNothing(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	h.device("d1", nil)
	spec := web("web", nil)
	spec.Workload.Version = ""
	out := h.deployment(spec)
	if len(notices(out, "InvalidSpec")) != 1 {
		t.Fatal("no InvalidSpec notice")
	}
	eqKeys(t, "no keys", puts(h.tick(), core.BucketDesiredState))
	s := h.depStatus("web")
	if s.LastError == "" || !cond(s.Conditions, CondDegraded).Status {
		t.Fatalf("status %+v", s)
	}
}

func TestBadKVValuesAreReportedAndIgnored(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	out := h.step(KVPut{Bucket: core.BucketDeviceHeartbeat, Key: "d1", Value: []byte(`{"v":9}`)})
	out = append(out, h.step(KVPut{Bucket: core.BucketDeviceState, Key: "bad key", Value: []byte(`{}`)})...)
	out = append(out, h.step(KVPut{Bucket: core.BucketAgentUpgradeStatus, Key: "d1", Value: []byte(`nope`)})...)
	if n := len(notices(out, "BadValue")); n != 3 {
		t.Fatalf("%d BadValue notices, want 3", n)
	}
	if h.op.Stats().BadValues != 3 || h.op.Online("d1") {
		t.Fatal("bad values changed state")
	}
}

func TestFailedKVPutIsRetried(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	h.device("d1", nil)
	h.deployment(web("web", nil))
	h.tick()
	h.step(KVWriteFailed{Bucket: core.BucketDesiredState, Key: "d1.web", Err: "timeout"})
	eqKeys(t, "retried", puts(h.tick(), core.BucketDesiredState), "d1.web")
}

func TestDeviceInfoCreatesDeviceObjectAndPlacesByItsLabels(t *testing.T) {
	h := newHarness(t, Config{CreateDevices: true})
	h.converge()
	h.deployment(web("web", map[string]string{"site": "a"}))
	b, _ := core.DeviceInfo{Device: "d1", Labels: map[string]string{"site": "a"},
		AgentVersion: core.MustParseVersion("v1.0.0")}.Encode()
	out := h.step(KVPut{Bucket: core.BucketDeviceInfo, Key: core.DeviceInfoKey("d1"), Value: b})
	var created bool
	for _, e := range out {
		if c, ok := e.(CreateDevice); ok && c.Name == "d1" && c.Labels["site"] == "a" {
			created = true
		}
	}
	if !created {
		t.Fatalf("no CreateDevice in %v", out)
	}
	eqKeys(t, "placed by device-info labels", puts(h.tick(), core.BucketDesiredState), "d1.web")
	st, _ := h.op.DeviceStatus("d1")
	if st.CurrentVersion.String() != "v1.0.0" {
		t.Fatalf("currentVersion %v", st.CurrentVersion)
	}
}

// A Device object deleted while its device keeps reporting device-info is
// created again from device-info, however often it is deleted.
func TestDeletedDeviceIsCreatedAgainEveryTime(t *testing.T) {
	info := func(site string) Input {
		b, _ := core.DeviceInfo{Device: "d1", Labels: map[string]string{"site": site},
			AgentVersion: core.MustParseVersion("v1.0.0")}.Encode()
		return KVPut{Bucket: core.BucketDeviceInfo, Key: core.DeviceInfoKey("d1"), Value: b}
	}
	object := DeviceUpsert{Device: DeviceRecord{Name: "d1", Labels: map[string]string{"site": "a"}}}
	deleted := DeviceDeleted{Name: "d1"}
	for _, tc := range []struct {
		name  string
		steps []Input
		want  []int // CreateDevice count expected after each step
	}{
		{"object from the start, deleted twice",
			[]Input{object, info("a"), deleted, info("a"), object, deleted, info("a")},
			[]int{0, 0, 0, 1, 0, 0, 1}},
		{"created from device-info, deleted three times",
			[]Input{info("a"), object, deleted, info("a"), object, deleted, info("a"), object, deleted, info("b")},
			[]int{1, 0, 0, 1, 0, 0, 1, 0, 0, 1}},
		{"asked once while the object is on its way",
			[]Input{info("a"), info("a"), info("a"), object, info("a")},
			[]int{1, 0, 0, 0, 0}},
		{"deleted before the created object reached the core",
			[]Input{info("a"), deleted, info("a"), object},
			[]int{1, 0, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{CreateDevices: true})
			h.converge()
			for i, in := range tc.steps {
				n := 0
				for _, e := range h.step(in) {
					if c, ok := e.(CreateDevice); ok && c.Name == "d1" {
						n++
					}
				}
				if n != tc.want[i] {
					t.Fatalf("step %d (%T): %d CreateDevice, want %d", i, in, n, tc.want[i])
				}
			}
		})
	}
}

func TestOnlineFromHeartbeatAgeOnOperatorClock(t *testing.T) {
	h := newHarness(t, Config{OfflineAfter: 30 * time.Second})
	h.device("d1", nil)
	// A replayed heartbeat says nothing about now.
	h.heartbeat("d1", "v1.0.0", 0)
	h.converge()
	if h.op.Online("d1") {
		t.Fatal("online from a replayed heartbeat")
	}
	h.heartbeat("d1", "v1.0.0", 0)
	if !h.op.Online("d1") {
		t.Fatal("offline right after a live heartbeat")
	}
	h.advance(20 * time.Second)
	h.heartbeat("d1", "v1.0.0", 0)
	h.advance(25 * time.Second)
	h.tick()
	if !h.op.Online("d1") {
		t.Fatal("offline 25s after the last heartbeat")
	}
	h.advance(6 * time.Second)
	out := h.tick()
	if h.op.Online("d1") || len(notices(out, "DeviceOffline")) != 1 {
		t.Fatalf("still online 31s after the last heartbeat: %v", out)
	}
	st, _ := h.op.DeviceStatus("d1")
	if c := cond(st.Conditions, CondOnline); c.Status || c.Reason != "HeartbeatStale" {
		t.Fatalf("online condition %+v", c)
	}
}

func TestLastSeenPatchesAreRateLimited(t *testing.T) {
	h := newHarness(t, Config{LastSeenResolution: time.Minute})
	h.converge()
	h.device("d1", nil)
	h.heartbeat("d1", "v1.0.0", 0)
	h.tick()
	patches := func(out []Effect) int {
		n := 0
		for _, e := range out {
			if _, ok := e.(PatchDeviceStatus); ok {
				n++
			}
		}
		return n
	}
	total := 0
	for i := 0; i < 5; i++ {
		h.advance(10 * time.Second)
		h.heartbeat("d1", "v1.0.0", 0)
		total += patches(h.tick())
	}
	if total != 0 {
		t.Fatalf("%d status patches for heartbeats within a minute", total)
	}
	h.advance(15 * time.Second)
	h.heartbeat("d1", "v1.0.0", 0)
	if patches(h.tick()) != 1 {
		t.Fatal("lastSeen not patched after a minute")
	}
}

func TestDeletedDeviceLosesItsKeys(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	h.device("d1", nil)
	h.deployment(web("web", nil))
	h.tick()
	out := h.step(DeviceDeleted{Name: "d1"})
	eqKeys(t, "deleted with the device", deletes(out, core.BucketDesiredState), "d1.web")
	h.tick()
	if c := h.depStatus("web").Counts; c.Total != 0 {
		t.Fatalf("counts %+v", c)
	}
}

func TestDeviceInfoLabelsArePushedToTheDeviceObject(t *testing.T) {
	h := newHarness(t, Config{CreateDevices: true})
	h.converge()
	h.step(DeviceUpsert{Device: DeviceRecord{Name: "d1", Labels: map[string]string{"owner": "ops"}}})
	b, _ := core.DeviceInfo{Device: "d1", Labels: map[string]string{"site": "b"},
		AgentVersion: core.MustParseVersion("v1.0.0")}.Encode()
	out := h.step(KVPut{Bucket: core.BucketDeviceInfo, Key: core.DeviceInfoKey("d1"), Value: b})
	var patched map[string]string
	for _, e := range out {
		if p, ok := e.(PatchDeviceLabels); ok {
			patched = p.Labels
		}
		if _, ok := e.(CreateDevice); ok {
			t.Fatal("CreateDevice for a device that has an object")
		}
	}
	if !reflect.DeepEqual(patched, map[string]string{"site": "b"}) {
		t.Fatalf("label patch %v", patched)
	}
	// Same info again: no second patch.
	if out := h.step(KVPut{Bucket: core.BucketDeviceInfo, Key: core.DeviceInfoKey("d1"), Value: b}); len(out) != 0 {
		for _, e := range out {
			if _, ok := e.(PatchDeviceLabels); ok {
				t.Fatal("label patch repeated")
			}
		}
	}
}

func TestReportOfAnOldGenerationDoesNotCount(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	h.device("d1", nil)
	spec := web("web", nil)
	spec.Generation = 3
	h.deployment(spec)
	h.tick()
	h.report("d1", "web", 2, core.PhaseFailed, "old failure")
	h.tick()
	s := h.depStatus("web")
	if s.Counts.Failed != 0 || s.Counts.Unreported != 1 || s.LastError != "" {
		t.Fatalf("status %+v", s)
	}
}
