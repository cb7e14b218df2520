package agentcore

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// randomInput draws any input the core knows, with attempts, versions and
// deployments from small sets so that matches happen often.
func randomInput(rng *rand.Rand, handle *uint64) Input {
	vs := []core.Version{v1, v2, v3}
	v := vs[rng.IntN(3)]
	at := uint32(rng.IntN(4))
	dep := []string{"web", "db"}[rng.IntN(2)]
	errs := []string{"", "", "boom"}
	e := errs[rng.IntN(3)]
	*handle++
	switch rng.IntN(19) {
	case 0:
		return TimerFired{Timer: []TimerID{TimerHeartbeat, TimerInfo, TimerCutover, TimerCandidatePoll, "bogus"}[rng.IntN(5)]}
	case 1:
		s := webSpec(int64(rng.IntN(3)))
		s.Deployment = dep
		return DesiredPut{Deployment: dep, Spec: s, Revision: uint64(rng.IntN(10))}
	case 2:
		return DesiredInvalid{Deployment: dep, Revision: uint64(rng.IntN(10)), Err: "bad"}
	case 3:
		return DesiredDeleted{Deployment: dep, Revision: uint64(rng.IntN(10))}
	case 4:
		return MarkerPut{Marker: marker(at, v)}
	case 5:
		return MarkerInvalid{Err: "bad"}
	case 6:
		return MarkerDeleted{}
	case 7:
		return WorkloadStatus{Deployment: dep, Generation: int64(rng.IntN(3)),
			Phase: []core.WorkloadPhase{core.PhaseRunning, core.PhaseFailed, core.PhaseApplying}[rng.IntN(3)], Err: e}
	case 8:
		return CommandReceived{Handle: *handle, Verb: core.VerbUpgradeStop, Request: core.CommandRequest{Schema: 1,
			Verb: core.VerbUpgradeStop, UpgradeStop: &core.UpgradeStopArgs{Attempt: at, TargetVersion: v}}}
	case 9:
		return CommandReceived{Handle: *handle, Verb: core.VerbPing, Request: core.CommandRequest{Schema: 1, Verb: core.VerbPing}}
	case 10:
		return CommandReceived{Handle: *handle, Verb: core.VerbUpgradeStop, DecodeErr: "bad"}
	case 11:
		return DownloadDone{Attempt: at, Err: e}
	case 12:
		return SelfTestDone{Attempt: at, Err: e}
	case 13:
		return SwapDone{Attempt: at, To: v, Err: e}
	case 14:
		return CandidateStarted{Attempt: at, Err: e}
	case 15:
		return CandidateExited{Attempt: at}
	case 16:
		return PreserveDone{Version: v, Err: e}
	case 17:
		return JournalRead{Records: cutoverJournal(at)}
	default:
		return Start{}
	}
}

// TestRandomInputsKeepThePromises feeds long random input sequences to
// agents started in every role and checks, after every Step: no panic; Exit
// only right after the Reply to an upgrade-stop for the attempt and target
// the agent was armed for; every journal record appended keeps the journal
// grammatical; every status, device state and reply validates; stamps
// strictly increase; nothing happens after Exit or Reexec.
func TestRandomInputsKeepThePromises(t *testing.T) {
	starts := []struct {
		v core.Version
		s Start
	}{
		{v1, Start{Journal: []Record{{Kind: RecInstalled, To: v1}}, Current: v1, Installed: []core.Version{v1}}},
		{v1, Start{}},
		{v2, Start{CandidateAttempt: 1, Journal: cutoverJournal(1), Current: v2, Installed: []core.Version{v1, v2}}},
		{v2, Start{Journal: cutoverJournal(1), Current: v2, Installed: []core.Version{v1, v2}}},
	}
	for seed := uint64(1); seed <= 300; seed++ {
		st := starts[seed%uint64(len(starts))]
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		a := New(testConfig(st.v))
		journal := slices.Clone(st.s.Journal)
		now := t0
		var handle uint64
		var last int64
		ended := false
		for i := 0; i < 400; i++ {
			var in Input = st.s
			if i > 0 {
				in = randomInput(rng, &handle)
				now = now.Add(time.Duration(rng.IntN(20000)-5000) * time.Millisecond) // the clock also steps back
			}
			armedAt, armed := a.Armed()
			target := a.Target()
			effs := step(a, now, in)
			if ended && len(effs) != 0 {
				t.Fatalf("seed %d step %d: effects after the process ended: %v", seed, i, names(effs))
			}
			for j, e := range effs {
				switch e := e.(type) {
				case AppendJournal:
					journal = append(journal, e.Record)
					if err := CheckJournal(journal); err != nil {
						t.Fatalf("seed %d step %d: %v", seed, i, err)
					}
				case PutUpgradeStatus:
					if err := e.Status.Validate(); err != nil {
						t.Fatalf("seed %d step %d: status: %v", seed, i, err)
					}
					if e.Status.At <= last {
						t.Fatalf("seed %d step %d: stamp %d after %d", seed, i, e.Status.At, last)
					}
					last = e.Status.At
				case PutDeviceState:
					if err := e.State.Validate(); err != nil {
						t.Fatalf("seed %d step %d: state: %v", seed, i, err)
					}
					if e.State.LastEventAt <= last {
						t.Fatalf("seed %d step %d: stamp %d after %d", seed, i, e.State.LastEventAt, last)
					}
					last = e.State.LastEventAt
				case Reply:
					if err := e.Reply.Validate(); err != nil {
						t.Fatalf("seed %d step %d: reply: %v", seed, i, err)
					}
				case Exit:
					c, ok := in.(CommandReceived)
					r, isReply := effs[j-1].(Reply)
					if !armed || !ok || c.Request.UpgradeStop == nil || c.Request.UpgradeStop.Attempt != armedAt ||
						!sameVersion(c.Request.UpgradeStop.TargetVersion, target) || !isReply || r.Reply.UpgradeStop == nil {
						t.Fatalf("seed %d step %d: Exit without an armed stop: in %#v effects %v", seed, i, in, names(effs))
					}
					ended = true
				case Reexec:
					ended = true
				}
			}
		}
	}
}

// TestDeterminismUnderRandomInputs: two agents fed the same random input
// sequence (clock steps included) emit byte-identical effects.
func TestDeterminismUnderRandomInputs(t *testing.T) {
	run := func(seed uint64) []string {
		rng := rand.New(rand.NewPCG(seed, 7))
		a := New(testConfig(v1))
		var out []string
		var handle uint64
		now := t0
		in := Input(Start{Journal: []Record{{Kind: RecInstalled, To: v1}}, Current: v1, Installed: []core.Version{v1}})
		for i := 0; i < 300; i++ {
			for _, e := range a.Step(now, in) {
				b, err := json.Marshal(e)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, fmt.Sprintf("%T%s", e, b))
			}
			in = randomInput(rng, &handle)
			now = now.Add(time.Duration(rng.IntN(20000)-5000) * time.Millisecond)
		}
		return out
	}
	for seed := uint64(1); seed <= 50; seed++ {
		a, b := run(seed), run(seed)
		if len(a) == 0 || !slices.Equal(a, b) {
			t.Fatalf("seed %d: runs differ (%d vs %d effects)", seed, len(a), len(b))
		}
	}
}
