package check

import (
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
)

var (
	v1 = core.MustParseVersion("v1.0.0")
	v2 = core.MustParseVersion("v1.1.0")
)

type disk struct {
	cur      core.Version
	has      bool
	runnable map[string]bool
}

func (d disk) Current() (core.Version, bool) { return d.cur, d.has }
func (d disk) Runnable(v core.Version) bool  { return d.runnable[v.String()] }
func only(t *testing.T, c *Checker, inv int) {
	t.Helper()
	if len(c.Violations) != 1 || c.Violations[0].Invariant != inv {
		t.Fatalf("want exactly one violation of invariant %d, got %v", inv, c.Violations)
	}
}
func none(t *testing.T, c *Checker) {
	t.Helper()
	if len(c.Violations) != 0 {
		t.Fatalf("want no violation, got %v", c.Violations)
	}
}

func TestInvariant1CurrentMustBeVerified(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    disk
		bad  bool
	}{
		{"verified current", disk{cur: v1, has: true, runnable: map[string]bool{"v1.0.0": true}}, false},
		{"missing link", disk{}, true},
		{"current points at an unverified download", disk{cur: v2, has: true, runnable: map[string]bool{"v1.0.0": true}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			c.CheckDisk(time.Second, "d1", tc.d)
			if tc.bad {
				only(t, c, InvDisk)
			} else {
				none(t, c)
			}
		})
	}
}

func TestInvariant2StopOnlyAfterNewHeartbeat(t *testing.T) {
	c := New()
	c.OperatorSawHeartbeat("d1", core.Heartbeat{AgentVersion: v1, Seq: 4})
	c.StopSent(time.Second, "d1", 1, v2)
	only(t, c, InvStopAfterHB)

	c = New()
	c.OperatorSawHeartbeat("d1", core.Heartbeat{AgentVersion: v1, Seq: 4, Attempt: 1}) // wrong version
	c.StopSent(time.Second, "d1", 1, v2)
	only(t, c, InvStopAfterHB)

	c = New()
	c.OperatorSawHeartbeat("d1", core.Heartbeat{AgentVersion: v2, Seq: 1, Attempt: 1})
	c.StopSent(time.Second, "d1", 1, v2)
	none(t, c)
	c.StopSent(time.Second, "d1", 2, v2) // a later attempt needs its own heartbeat
	only(t, c, InvStopAfterHB)
}

func TestInvariant3NoSelfStop(t *testing.T) {
	arm := []agentcore.Effect{agentcore.PutUpgradeStatus{Status: core.UpgradeStatus{Attempt: 1,
		Phase: core.UpgradeWaitingForStop, TargetVersion: &v2, FromVersion: v1, RunningVersion: v1}}}
	stop := func(attempt uint32, target core.Version) agentcore.CommandReceived {
		return agentcore.CommandReceived{Handle: 7, Verb: core.VerbUpgradeStop, Request: core.CommandRequest{
			Verb: core.VerbUpgradeStop, UpgradeStop: &core.UpgradeStopArgs{Attempt: attempt, TargetVersion: target}}}
	}
	replyExit := []agentcore.Effect{agentcore.Reply{Handle: 7}, agentcore.Exit{Reason: "committed"}}

	t.Run("exit on a timer is a self-stop", func(t *testing.T) {
		c, p := New(), &Proc{}
		c.AgentStep(0, "d1", p, agentcore.TimerFired{Timer: agentcore.TimerCutover}, []agentcore.Effect{agentcore.Exit{}})
		only(t, c, InvNoSelfStop)
	})
	t.Run("exit on a stop while not armed", func(t *testing.T) {
		c, p := New(), &Proc{}
		c.AgentStep(0, "d1", p, stop(1, v2), replyExit)
		only(t, c, InvNoSelfStop)
	})
	t.Run("exit on a stop for another attempt", func(t *testing.T) {
		c, p := New(), &Proc{}
		c.AgentStep(0, "d1", p, agentcore.CandidateStarted{Attempt: 1}, arm)
		c.AgentStep(0, "d1", p, stop(2, v2), replyExit)
		only(t, c, InvNoSelfStop)
	})
	t.Run("exit before the reply", func(t *testing.T) {
		c, p := New(), &Proc{}
		c.AgentStep(0, "d1", p, agentcore.CandidateStarted{Attempt: 1}, arm)
		c.AgentStep(0, "d1", p, stop(1, v2), []agentcore.Effect{agentcore.Exit{}, agentcore.Reply{Handle: 7}})
		only(t, c, InvNoSelfStop)
	})
	t.Run("a candidate never exits", func(t *testing.T) {
		c, p := New(), &Proc{Candidate: true}
		c.AgentStep(0, "d1", p, agentcore.CandidateStarted{Attempt: 1}, arm)
		c.AgentStep(0, "d1", p, stop(1, v2), replyExit)
		only(t, c, InvNoSelfStop)
	})
	t.Run("armed stop, reply then exit is fine", func(t *testing.T) {
		c, p := New(), &Proc{}
		c.AgentStep(0, "d1", p, agentcore.CandidateStarted{Attempt: 1}, arm)
		c.AgentStep(0, "d1", p, stop(1, v2), replyExit)
		none(t, c)
	})
}

func TestInvariant4RolloutBounds(t *testing.T) {
	t.Run("more in flight than maxUnavailable", func(t *testing.T) {
		c := New()
		c.RolloutBounds("r", 2, -1)
		c.MarkerWritten(0, "d1", "r", 1)
		c.MarkerWritten(0, "d2", "r", 1)
		none(t, c)
		c.MarkerWritten(0, "d1", "r", 1) // a rewrite is not a new start
		none(t, c)
		c.MarkerWritten(0, "d3", "r", 1)
		only(t, c, InvRollout)
	})
	t.Run("finished devices free their slot", func(t *testing.T) {
		c := New()
		c.RolloutBounds("r", 1, -1)
		c.MarkerWritten(0, "d1", "r", 1)
		c.AttemptOver("d1", 1, false)
		c.MarkerWritten(0, "d2", "r", 1)
		none(t, c)
	})
	t.Run("start past the failure threshold", func(t *testing.T) {
		c := New()
		c.RolloutBounds("r", 10, 1)
		c.MarkerWritten(0, "d1", "r", 1)
		c.MarkerWritten(0, "d2", "r", 1)
		c.AttemptOver("d1", 1, true)
		c.MarkerWritten(0, "d3", "r", 1) // 1 failed: not past 1
		none(t, c)
		c.AttemptOver("d2", 1, true)
		c.MarkerWritten(0, "d4", "r", 1) // 2 failed > 1
		only(t, c, InvRollout)
	})
}

func TestInvariant5Blacklist(t *testing.T) {
	c := New()
	c.DeviceSeen("d1", nil, false)
	c.DesiredWritten(0, "d1", "d1.web", []byte(`{"v":1}`))
	none(t, c)
	c.DeviceSeen("d1", nil, true)
	c.DesiredWritten(0, "d1", "d1.web", []byte(`{"v":1}`)) // same value: not new
	none(t, c)
	c.DesiredWritten(0, "d1", "d1.web", []byte(`{"v":2}`))
	only(t, c, InvBlacklist)

	c = New()
	c.DeviceSeen("d1", nil, true)
	c.MarkerWritten(0, "d1", "r", 1)
	only(t, c, InvBlacklist)
}

func TestInvariant6DeploymentCounts(t *testing.T) {
	sel := core.LabelSelector{MatchLabels: map[string]string{"site": "a"}}
	setup := func() *Checker {
		c := New()
		c.DeviceSeen("d1", map[string]string{"site": "a"}, false)
		c.DeviceSeen("d2", map[string]string{"site": "a"}, false)
		c.DeviceSeen("d3", map[string]string{"site": "b"}, false)
		c.DeploymentSeen("web", 2, sel)
		c.DeviceStateSeen("d1", "web", 2, core.PhaseRunning, false)
		c.DeviceStateSeen("d2", "web", 1, core.PhaseRunning, false) // stale generation
		return c
	}
	c := setup()
	c.DeploymentPatched(0, "web", 2, Counts{Total: 2, Succeeded: 1, Unreported: 1})
	none(t, c)

	c = setup()
	c.DeploymentPatched(0, "web", 2, Counts{Total: 2, Succeeded: 2}) // counts the stale report
	only(t, c, InvCounts)

	c = setup()
	c.DeploymentPatched(0, "web", 2, Counts{Total: 3, Succeeded: 1, Unreported: 1}) // sum off
	only(t, c, InvCounts)

	c = setup()
	c.DeviceSeen("d2", map[string]string{"site": "a"}, true) // blacklisted: not targeted
	c.DeploymentPatched(0, "web", 2, Counts{Total: 2, Succeeded: 1, Unreported: 1})
	only(t, c, InvCounts)
}

// The operator's own time-out is a provisional failure: it pauses a
// rollout at threshold 0, but when the device comes back and commits that
// attempt the operator counts it Succeeded and may start the next device
// (seed 148 of flaky-network --swarm). A failure the agent reports after
// the time-out, or one of a device that left the rollout, stays a failure.
func TestInvariant4LateCommitSettlesATimedOutAttempt(t *testing.T) {
	cases := []struct {
		name    string
		settle  func(c *Checker)
		violate bool
	}{
		{name: "timed out and nothing since: start is past the threshold",
			settle: func(c *Checker) {}, violate: true},
		{name: "committed after the time-out",
			settle: func(c *Checker) { c.AttemptOver("d1", 1, false) }},
		{name: "the time-out reported again after the commit",
			settle: func(c *Checker) { c.AttemptOver("d1", 1, false); c.AttemptTimedOut("d1", 1) }},
		{name: "rolled back after the time-out",
			settle: func(c *Checker) { c.AttemptOver("d1", 1, true); c.AttemptOver("d1", 1, false) }, violate: true},
		{name: "blacklisted after the time-out, then committed",
			settle: func(c *Checker) {
				c.DeviceSeen("d1", nil, true)
				c.AttemptOver("d1", 1, false)
			}, violate: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			c.RolloutBounds("r", 1, 0)
			c.MarkerWritten(0, "d1", "r", 1)
			c.AttemptTimedOut("d1", 1)
			tc.settle(c)
			c.MarkerWritten(0, "d2", "r", 1)
			if tc.violate {
				only(t, c, InvRollout)
			} else {
				none(t, c)
			}
		})
	}
}

func TestInvariant4ForgetsMarkersLostWithACrashedOperator(t *testing.T) {
	c := New()
	c.RolloutBounds("r", 1, -1)
	c.MarkerWritten(0, "d1", "r", 1) // queued when the operator crashed
	c.MarkersLost()
	c.MarkerWritten(0, "d2", "r", 1) // the restarted operator starts another
	none(t, c)
	c.MarkerLanded("d2", 1)
	c.MarkersLost() // landed writes are not lost
	c.MarkerWritten(0, "d1", "r", 1)
	only(t, c, InvRollout)
}

func TestInvariant4ResolvesPercentagesAgainstTargetedDevices(t *testing.T) {
	c := New()
	for _, d := range []string{"a", "b", "c", "d"} {
		c.DeviceSeen(d, map[string]string{"site": "x"}, false)
	}
	c.DeviceSeen("e", map[string]string{"site": "y"}, false)
	sel := core.LabelSelector{MatchLabels: map[string]string{"site": "x"}}
	c.RolloutSeen("r", sel, Amount{Value: 50, Percent: true}, nil) // 50% of 4 = 2
	c.MarkerWritten(0, "a", "r", 1)
	c.MarkerWritten(0, "b", "r", 1)
	none(t, c)
	c.DeviceSeen("d", map[string]string{"site": "x"}, true) // 50% of 3 = 1
	c.AttemptOver("a", 1, false)
	c.MarkerWritten(0, "c", "r", 1)
	only(t, c, InvRollout)
}

// Deletions as the operator sees them: a deleting Deployment targets no
// device from the generation its deletion timestamp came with (a status for
// the generation before still counts its devices); a deleted Device stays
// counted by its device-info labels, unblacklisted, or is forgotten without
// device-info; a deleted rollout stops bounding anything.
func TestDeletionsChangeWhatTheOperatorCounts(t *testing.T) {
	sel := core.LabelSelector{MatchLabels: map[string]string{"site": "a"}}
	setup := func() *Checker {
		c := New()
		c.DeviceSeen("d1", map[string]string{"site": "a"}, false)
		c.DeviceSeen("d2", map[string]string{"site": "a"}, true)
		c.DeploymentSeen("web", 2, sel)
		c.DeviceStateSeen("d1", "web", 2, core.PhaseRunning, false)
		return c
	}
	c := setup()
	c.DeploymentDeleting("web", 3)
	c.DeploymentPatched(0, "web", 2, Counts{Total: 1, Succeeded: 1}) // not delivered yet: gen 2 counts d1
	c.DeploymentSeen("web", 3, sel)
	c.DeploymentPatched(0, "web", 3, Counts{Total: 0})
	none(t, c)
	c.DeploymentPatched(0, "web", 3, Counts{Total: 1, Succeeded: 1})
	only(t, c, InvCounts)

	// d2 was blacklisted; deleted, it is placed by its device-info again.
	c = setup()
	c.DeviceDeleted("d2", map[string]string{"site": "a"}, true)
	c.DeploymentPatched(0, "web", 2, Counts{Total: 2, Succeeded: 1, Unreported: 1})
	c.DesiredWritten(0, "d2", "d2.web", []byte("new"))
	none(t, c)
	// d1 without device-info is forgotten.
	c.DeviceDeleted("d1", nil, false)
	c.DeploymentPatched(0, "web", 2, Counts{Total: 1, Unreported: 1})
	none(t, c)

	c = New()
	c.DeviceSeen("d1", map[string]string{"site": "a"}, false)
	c.DeviceSeen("d2", map[string]string{"site": "a"}, false)
	c.RolloutSeen("r", sel, Amount{Value: 1}, nil)
	c.MarkerWritten(0, "d1", "r", 1)
	c.RolloutGone("r")
	c.MarkerWritten(0, "d2", "r", 1) // a marker the operator wrote before it learnt of the deletion
	none(t, c)
}
