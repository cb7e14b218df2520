package agentcore

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/flotilla-fleet/flotilla/core"
)

// crashScenarios are the runs whose every effect is a crash point.
var crashScenarios = []struct {
	name string
	beh  behaviour
}{
	{"upgrade", behaviour{}},
	{"rollback on cutover timeout", behaviour{operatorSilent: true}},
	{"rollback on candidate crash", behaviour{candidateCrash: true}},
	{"self-test failure", behaviour{selfTestErr: "exit status 1"}},
	{"swap failure", behaviour{swapErr: "EIO"}},
}

// scenarioRun boots v1 on a preserved device, asks for attempt 1 to v2 and
// runs until nothing is left to do.
func scenarioRun(w *world) {
	w.putDesired(webSpec(1), 1)
	w.boot(v1, 0)
	w.run()
	w.putMarker(marker(1, v2))
	w.run()
}

// TestCrashAtEveryEffect is the crash-point property: for every effect of a
// full upgrade (and of each rollback and failure path), the device crashes
// right after it — a power cut (every process dies, the device boots from
// current), a power cut that also tears that last unsynced step (the journal
// record or the rename is lost), or a crash of only the process that emitted
// it (systemd restarts the main unit when no agent is left). The journal is
// what was appended; a new Agent is built from Start{journal, current,
// installed}; the run continues. At every step current must point at an
// installed, verified version; at the end exactly one agent runs the
// version the journal wants, the journal is consistent, no attempt is in
// flight, and a further upgrade still succeeds.
func TestCrashAtEveryEffect(t *testing.T) {
	modes := []struct {
		name string
		mode crashMode
	}{{"power-cut", crashPowerCut}, {"power-cut-torn", crashPowerCutTorn}, {"agent-crash", crashAgent}}
	for _, sc := range crashScenarios {
		dry := newWorld(t).preserved(v1)
		dry.beh = sc.beh
		scenarioRun(dry)
		dry.settled()
		total := dry.effectN
		t.Logf("%s: %d crash points × 3 modes", sc.name, total)
		if total < 10 {
			t.Fatalf("%s: only %d effects in the dry run", sc.name, total)
		}
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s/%s", sc.name, m.name), func(t *testing.T) {
				for k := 1; k <= total; k++ {
					w := newWorld(t).preserved(v1)
					w.beh = sc.beh
					w.crashAt, w.crashMode = k, m.mode
					scenarioRun(w)
					if !w.crashed {
						t.Fatalf("crash point %d not reached", k)
					}
					act := w.settled()
					committed := slices.ContainsFunc(w.journal, func(r Record) bool { return r.Kind == RecCommitted && r.Attempt == 1 })
					want := v1
					if committed {
						want = v2
					}
					if !sameVersion(act.a.Version(), want) {
						t.Fatalf("crash point %d: running %s, want %s (committed=%v)\n%s", k, act.a.Version(), want, committed, w.dump())
					}
					if st := w.states["web"]; st.Phase != core.PhaseRunning {
						t.Fatalf("crash point %d: workload %s after recovery\n%s", k, st.Phase, w.dump())
					}
					// The device can still be upgraded.
					w.beh = behaviour{}
					next := v3
					if !committed {
						next = v2
					}
					w.putMarker(marker(2, next))
					w.run()
					act = w.settled()
					if !sameVersion(act.a.Version(), next) {
						t.Fatalf("crash point %d: follow-up upgrade ended on %s, want %s\n%s", k, act.a.Version(), next, w.dump())
					}
				}
			})
		}
	}
}

// TestCrashDuringRecovery crashes the process that is recovering, at every
// effect of its recovery, after a power cut in the middle of the cutover.
func TestCrashDuringRecovery(t *testing.T) {
	// Find the effect index right after journal "swapped" in a dry run.
	dry := newWorld(t).preserved(v1)
	dry.record = true
	scenarioRun(dry)
	at := slices.IndexFunc(dry.effects, func(s string) bool { return strings.Contains(s, `"kind":"swapped"`) }) + 1
	if at == 0 {
		t.Fatal("no swapped record in the dry run")
	}
	for k := 1; k <= 12; k++ {
		w := newWorld(t).preserved(v1)
		w.crashAt, w.crashMode = at, crashPowerCut
		scenarioRun(w)
		// Second power cut k effects into the recovery.
		w.crashed, w.crashAt = false, w.effectN+k
		w.run()
		if w.crashed {
			w.run()
		}
		act := w.settled()
		if !sameVersion(act.a.Version(), v1) {
			t.Fatalf("second crash at +%d: running %s\n%s", k, act.a.Version(), w.dump())
		}
	}
}

// TestDeterminism: the same inputs, twice, give identical effects.
func TestDeterminism(t *testing.T) {
	for _, sc := range crashScenarios {
		var runs [2][]string
		for i := range runs {
			w := newWorld(t).preserved(v1)
			w.beh = sc.beh
			w.record = true
			w.crashAt, w.crashMode = 25, crashPowerCut
			w.putDesired(core.WorkloadSpec{Schema: 1, Deployment: "db", Generation: 2, Name: "db", Version: "16",
				Env: map[string]string{"Z": "1", "A": "2", "M": "3"}}, 3)
			scenarioRun(w)
			runs[i] = w.effects
		}
		if len(runs[0]) == 0 || !slices.Equal(runs[0], runs[1]) {
			for i := range min(len(runs[0]), len(runs[1])) {
				if runs[0][i] != runs[1][i] {
					t.Fatalf("%s: runs differ at effect %d:\n%s\n%s", sc.name, i, runs[0][i], runs[1][i])
				}
			}
			t.Fatalf("%s: runs differ in length: %d vs %d", sc.name, len(runs[0]), len(runs[1]))
		}
	}
}
