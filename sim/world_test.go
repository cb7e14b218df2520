package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/sim/check"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

var (
	v10 = core.MustParseVersion("v1.0.0")
	v11 = core.MustParseVersion("v1.1.0")
)

func mustScenario(t *testing.T, src string) *scenario.Scenario {
	t.Helper()
	sc, err := scenario.Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

const tinyUpgrade = `name: tiny
duration: 1h
fleet: {devices: 3, agent_version: v1.0.0}
steps:
  - {at: 30s, upgrade_agent: {version: v1.1.0, artifact: ARTIFACT, strategy: {max_unavailable: 1}}}
expect:
  converged_within: 30m
`

func tiny(t *testing.T, artifact string) *Result {
	t.Helper()
	r, err := Run(mustScenario(t, strings.Replace(tinyUpgrade, "ARTIFACT", artifact, 1)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Violations) > 0 {
		t.Fatalf("violations: %v", r.Violations)
	}
	return r
}

func TestArtifactBehavioursReachTheAgent(t *testing.T) {
	for _, tc := range []struct {
		artifact string
		version  string
		outcome  string
	}{
		{"healthy", "v1.1.0", "Committed"},
		{"corrupt", "v1.0.0", "Failed/ChecksumMismatch"},
		{"disk-full", "v1.0.0", "Failed/DiskFull"},
		{"download-fails", "v1.0.0", "Failed/DownloadFailed"},
		{"fails-self-test", "v1.0.0", "Failed/SelfTestFailed"},
		{"crashes-after-cutover", "v1.0.0", "RolledBack/"},
		{"hangs", "v1.0.0", "RolledBack/CutoverTimeout"},
	} {
		t.Run(tc.artifact, func(t *testing.T) {
			r := tiny(t, tc.artifact)
			if r.FinalAgentVersions[tc.version] != 3 {
				t.Fatalf("final versions %v, want all on %s", r.FinalAgentVersions, tc.version)
			}
			n := 0
			for k, v := range r.UpgradeOutcomes {
				if strings.HasPrefix(k, tc.outcome) {
					n += v
				}
			}
			if n != 3 {
				t.Fatalf("upgrade outcomes %v, want 3 × %s", r.UpgradeOutcomes, tc.outcome)
			}
		})
	}
}

func TestSameSeedSameHashDifferentSeedDifferentHash(t *testing.T) {
	sc := mustScenario(t, strings.Replace(tinyUpgrade, "ARTIFACT", "healthy", 1))
	a, _ := Run(sc, Options{})
	b, _ := Run(sc, Options{})
	c, _ := Run(sc, Options{Seed: 99, SeedSet: true})
	if a.TraceSHA256 != b.TraceSHA256 || a.Events != b.Events {
		t.Fatal("same seed, different trace")
	}
	if a.TraceSHA256 == c.TraceSHA256 {
		t.Fatal("different seed, same trace")
	}
}

func TestLivenessFailsWhenTheBoundIsTooShortAndPrintsTheReplay(t *testing.T) {
	src := strings.Replace(tinyUpgrade, "ARTIFACT", "healthy", 1)
	src = strings.Replace(src, "converged_within: 30m", "converged_within: 5s", 1)
	r, err := Run(mustScenario(t, src), Options{Seed: 5, SeedSet: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Passed || len(r.Violations) != 1 || r.Violations[0].Invariant != check.InvLiveness {
		t.Fatalf("want one liveness violation, got %v", r.Violations)
	}
	if r.Replay != "flotilla sim replay test.yaml --seed 5" {
		t.Fatalf("replay command %q", r.Replay)
	}
}

// A device whose disk is broken behind the agent's back trips invariant 1
// at its next boot.
func TestInvariant1FiresInTheWorld(t *testing.T) {
	w, err := New(mustScenario(t, strings.Replace(tinyUpgrade, "ARTIFACT", "healthy", 1)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.devs[1].disk.versions[0].verified = false
	r := w.Run()
	if len(r.Violations) == 0 || r.Violations[0].Invariant != check.InvDisk || r.Violations[0].Device != w.devs[1].name {
		t.Fatalf("want invariant 1 on %s, got %v", w.devs[1].name, r.Violations)
	}
}

func TestDiskTearsOnlyTheWriteInFlight(t *testing.T) {
	w, _ := New(mustScenario(t, strings.Replace(tinyUpgrade, "ARTIFACT", "healthy", 1)), Options{})
	d := w.devs[0]
	d.powered = true
	d.disk.versions = append(d.disk.versions, verDir{v: v11, complete: true, verified: true})
	p := &Proc{dev: d, alive: true}

	// A torn swap leaves either link; both are runnable.
	p.busy, p.diskOp = true, agentcore.SwapCurrent{Attempt: 1, To: v11}
	d.tearDiskOp(p, true)
	if cur, _ := d.disk.Current(); cur.Compare(v11) != 0 || !d.disk.Runnable(cur) {
		t.Fatalf("torn swap left current=%v", cur)
	}
	// A lost journal append leaves nothing; a torn one leaves a prefix of
	// its line, which the production reader drops.
	d.disk.append(agentcore.Record{Kind: agentcore.RecBegin, Attempt: 1})
	intact := len(d.disk.journal)
	p.diskOp = agentcore.AppendJournal{Record: agentcore.Record{Kind: agentcore.RecStaged, Attempt: 1}}
	d.tearDiskOp(p, true)
	d.disk.mount()
	if len(d.disk.journal) <= intact {
		t.Fatalf("a torn append left no bytes behind (%d, intact %d)", len(d.disk.journal), intact)
	}
	if j := d.disk.ReadJournal(); len(j) != 1 || j[0].Kind != agentcore.RecBegin {
		t.Fatalf("journal after a torn append: %v", j)
	}
	// A torn preserve leaves an incomplete directory that is not installed.
	p.diskOp = agentcore.PreserveRunning{Version: core.MustParseVersion("v0.9.0")}
	d.tearDiskOp(p, true)
	for _, v := range d.disk.Installed() {
		if v.String() == "v0.9.0" {
			t.Fatal("a torn copy is listed as installed")
		}
	}
}

func TestPowerCutsAtEveryStepKeepTheDiskVerified(t *testing.T) {
	src := `name: cuts
duration: 2h
fleet: {devices: 40, labels: {g: [a, b, c, d]}, agent_version: v1.0.0}
steps:
  - {at: 30s, upgrade_agent: {version: v1.1.0, strategy: {max_unavailable: "50%"}}}
faults:
  - {kind: power-cut, when: Staging, selector: {g: a}, down: 10s, lose: torn, count: 2}
  - {kind: power-cut, when: Verifying, selector: {g: b}, down: 10s, lose: torn}
  - {kind: power-cut, when: CutoverReady, selector: {g: c}, down: 10s, lose: torn}
  - {kind: power-cut, when: WaitingForStop, selector: {g: d}, down: 10s, lose: lost}
expect:
  converged_within: 60m
`
	r, err := Run(mustScenario(t, src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Passed || r.FaultsFired["power-cut"] < 40 {
		t.Fatalf("passed=%v power cuts=%d violations=%v expectations=%v", r.Passed, r.FaultsFired["power-cut"], r.Violations, r.Expectations)
	}
}

func TestOperatorCrashLosesMemoryButNotObjects(t *testing.T) {
	w, _ := New(mustScenario(t, strings.Replace(tinyUpgrade, "ARTIFACT", "healthy", 1)), Options{})
	w.op.start()
	w.k.Run(10 * time.Second)
	before := w.op.core
	w.op.crash()
	if w.op.alive || w.op.core != nil {
		t.Fatal("crash kept the operator's memory")
	}
	if len(w.store.devices) != 3 {
		t.Fatal("crash lost objects")
	}
	w.op.start()
	if w.op.core == before {
		t.Fatal("restart reused the old core")
	}
}
