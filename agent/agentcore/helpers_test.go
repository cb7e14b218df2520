package agentcore

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// ready returns an active agent of version v on a preserved device, past
// its start-up effects.
func ready(t *testing.T, v core.Version) *Agent {
	t.Helper()
	a := New(testConfig(v))
	a.Step(t0, Start{BootID: "b", Journal: []Record{{Kind: RecInstalled, To: v}}, Current: v, Installed: []core.Version{v}})
	if !a.Ready() {
		t.Fatalf("agent not ready after Start")
	}
	return a
}

func step(a *Agent, now time.Time, in Input) []Effect { return slices.Clone(a.Step(now, in)) }

// names lists the effects as short strings, for order assertions.
func names(effs []Effect) []string {
	var out []string
	for _, e := range effs {
		switch e := e.(type) {
		case Log:
			continue
		case AppendJournal:
			out = append(out, "journal:"+string(e.Record.Kind))
		case PutUpgradeStatus:
			out = append(out, "status:"+string(e.Status.Phase))
		case ArmTimer:
			out = append(out, "arm:"+string(e.Timer))
		case CancelTimer:
			out = append(out, "cancel:"+string(e.Timer))
		case PutDeviceState:
			out = append(out, "state:"+e.State.Deployment+":"+string(e.State.Phase))
		case SwapCurrent:
			out = append(out, "swap:"+e.To.String())
		default:
			out = append(out, fmt.Sprintf("%T", e)[len("agentcore."):])
		}
	}
	return out
}

func only[T Effect](effs []Effect) []T {
	var out []T
	for _, e := range effs {
		if x, ok := e.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

func wantNames(t *testing.T, effs []Effect, want ...string) {
	t.Helper()
	if got := names(effs); !slices.Equal(got, want) {
		t.Fatalf("effects\n got %v\nwant %v", got, want)
	}
}

// toWaitingForStop drives a ready v1 agent through attempt 1 to v2 up to
// WaitingForStop (armed).
func toWaitingForStop(t *testing.T) *Agent {
	t.Helper()
	a := ready(t, v1)
	a.Step(t0, MarkerPut{Marker: marker(1, v2)})
	a.Step(t0, DownloadDone{Attempt: 1})
	a.Step(t0, SelfTestDone{Attempt: 1})
	a.Step(t0, SwapDone{Attempt: 1, To: v2})
	a.Step(t0, CandidateStarted{Attempt: 1})
	if at, ok := a.Armed(); !ok || at != 1 {
		t.Fatalf("not armed for attempt 1: phase %s", a.UpgradePhase())
	}
	return a
}

func webSpec(gen int64) core.WorkloadSpec {
	return core.WorkloadSpec{Schema: core.SchemaVersion, Deployment: "web", Generation: gen, Name: "web", Version: "1.25"}
}
