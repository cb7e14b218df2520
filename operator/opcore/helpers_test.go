package opcore

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// harness drives one core and checks, on every step, the contract that
// every value the core writes decodes with the core/ decoders.
type harness struct {
	t   *testing.T
	op  *Operator
	now time.Time
	all []Effect
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	return &harness{t: t, op: New(cfg), now: t0}
}

func (h *harness) step(in Input) []Effect {
	h.t.Helper()
	out := h.op.Step(h.now, in)
	for _, e := range out {
		if p, ok := e.(PutKV); ok {
			if err := decodeForBucket(p.Bucket, p.Value); err != nil {
				h.t.Fatalf("the core wrote %s/%s that core/ cannot decode: %v", p.Bucket, p.Key, err)
			}
		}
	}
	h.all = append(h.all, out...)
	return out
}

func decodeForBucket(bucket string, v []byte) error {
	switch bucket {
	case core.BucketDesiredState:
		_, err := core.DecodeWorkloadSpec(v)
		return err
	case core.BucketAgentUpgrade:
		_, err := core.DecodeUpgradeMarker(v)
		return err
	}
	return fmt.Errorf("the operator must not write bucket %s", bucket)
}

func (h *harness) advance(d time.Duration) { h.now = h.now.Add(d) }

func (h *harness) tick() []Effect { h.t.Helper(); return h.step(Tick{}) }

// converge delivers the recovery inputs.
func (h *harness) converge() []Effect {
	h.t.Helper()
	var out []Effect
	out = append(out, h.step(KVReplayed{})...)
	out = append(out, h.step(CachesSynced{})...)
	if h.op.Phase() != Converged {
		h.t.Fatalf("phase %s after CachesSynced and KVReplayed", h.op.Phase())
	}
	return out
}

func (h *harness) device(name string, labels map[string]string) []Effect {
	h.t.Helper()
	return h.step(DeviceUpsert{Device: DeviceRecord{Name: name, Labels: labels}})
}

func (h *harness) deployment(spec DeploymentSpec) []Effect {
	h.t.Helper()
	return h.step(DeploymentUpsert{Spec: spec})
}

func (h *harness) report(dev, dep string, gen int64, phase core.WorkloadPhase, errMsg string) []Effect {
	h.t.Helper()
	b, err := core.DeviceState{Device: dev, Deployment: dep, Generation: gen, Phase: phase,
		LastEventAt: h.now.UnixMilli(), LastError: errMsg}.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	return h.step(KVPut{Bucket: core.BucketDeviceState, Key: core.DeviceStateKey(dev, dep), Value: b})
}

func (h *harness) heartbeat(dev, version string, attempt uint32) []Effect {
	h.t.Helper()
	b, err := core.Heartbeat{AgentVersion: core.MustParseVersion(version), Seq: 1, UptimeSec: 1, Attempt: attempt}.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	return h.step(KVPut{Bucket: core.BucketDeviceHeartbeat, Key: dev, Value: b})
}

func (h *harness) upgradeStatus(dev string, attempt uint32, phase core.AgentUpgradePhase, from, to, running string, reason core.UpgradeReason) []Effect {
	h.t.Helper()
	s := core.UpgradeStatus{Attempt: attempt, Phase: phase, FromVersion: core.MustParseVersion(from),
		RunningVersion: core.MustParseVersion(running), Reason: reason, At: h.now.UnixMilli()}
	if to != "" {
		v := core.MustParseVersion(to)
		s.TargetVersion = &v
	}
	b, err := s.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	return h.step(KVPut{Bucket: core.BucketAgentUpgradeStatus, Key: dev, Value: b})
}

func (h *harness) depStatus(name string) DeploymentStatus {
	h.t.Helper()
	s, ok := h.op.DeploymentStatus(name)
	if !ok {
		h.t.Fatalf("no deployment %s", name)
	}
	return s
}

func (h *harness) rollStatus(name string) AgentRolloutStatus {
	h.t.Helper()
	s, ok := h.op.AgentRolloutStatus(name)
	if !ok {
		h.t.Fatalf("no agent rollout %s", name)
	}
	return s
}

func puts(effects []Effect, bucket string) []string {
	var out []string
	for _, e := range effects {
		if p, ok := e.(PutKV); ok && p.Bucket == bucket {
			out = append(out, p.Key)
		}
	}
	return out
}

func deletes(effects []Effect, bucket string) []string {
	var out []string
	for _, e := range effects {
		if d, ok := e.(DeleteKV); ok && d.Bucket == bucket {
			out = append(out, d.Key)
		}
	}
	return out
}

func commands(effects []Effect) []SendCommand {
	var out []SendCommand
	for _, e := range effects {
		if c, ok := e.(SendCommand); ok {
			out = append(out, c)
		}
	}
	return out
}

func notices(effects []Effect, reason string) []Notice {
	var out []Notice
	for _, e := range effects {
		if n, ok := e.(Notice); ok && n.Reason == reason {
			out = append(out, n)
		}
	}
	return out
}

func cond(conds []Condition, typ string) Condition {
	for _, c := range conds {
		if c.Type == typ {
			return c
		}
	}
	return Condition{Type: typ, Reason: "<missing>"}
}

func eqKeys(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	g := slices.Clone(got)
	w := slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s: got [%s], want [%s]", what, strings.Join(g, " "), strings.Join(w, " "))
	}
}

func web(name string, sel map[string]string) DeploymentSpec {
	return DeploymentSpec{Name: name, Generation: 1, Selector: core.LabelSelector{MatchLabels: sel},
		Workload: Workload{Name: "web", Version: "1.0", Runtime: core.RuntimeProcess}}
}

var sha = strings.Repeat("ab", 32)

func agentRollout(name, version string, sel map[string]string, st Strategy) AgentRolloutSpec {
	return AgentRolloutSpec{Name: name, Generation: 1, Version: core.MustParseVersion(version),
		Artifact: core.ArtifactRef{Object: "flotilla-agent/" + version, SHA256: sha, Size: 1000},
		Selector: core.LabelSelector{MatchLabels: sel}, Rollout: st}
}
