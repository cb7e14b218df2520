package agentcore

import (
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// cpuTime is the process's user+system CPU time. Benchmarks report it per
// op (cpu-ns/op) beside the wall-clock ns/op, because the shared build
// machine is heavily oversubscribed and wall time there measures the queue.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkHeartbeatTick is the simulator's most frequent event: an idle
// agent's heartbeat timer fires.
func BenchmarkHeartbeatTick(b *testing.B) {
	a := New(testConfig(v1))
	a.Step(t0, Start{Journal: []Record{{Kind: RecInstalled, To: v1}}, Current: v1, Installed: []core.Version{v1}})
	in := Input(TimerFired{Timer: TimerHeartbeat})
	now := t0
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for b.Loop() {
		now = now.Add(10 * time.Second)
		if len(a.Step(now, in)) != 2 {
			b.Fatal("heartbeat tick without two effects")
		}
	}
}

// BenchmarkWorkloadStatus is a workload reporting Running (a device-state
// write).
func BenchmarkWorkloadStatus(b *testing.B) {
	a := New(testConfig(v1))
	a.Step(t0, Start{Journal: []Record{{Kind: RecInstalled, To: v1}}, Current: v1, Installed: []core.Version{v1}})
	a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 1})
	run := Input(WorkloadStatus{Deployment: "web", Generation: 1, Phase: core.PhaseRunning})
	fail := Input(WorkloadStatus{Deployment: "web", Generation: 1, Phase: core.PhaseFailed, Err: "exit 1"})
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	i := 0
	for b.Loop() {
		in := run
		if i%2 == 1 {
			in = fail
		}
		i++
		a.Step(t0, in)
	}
}

// BenchmarkFullUpgrade drives one device through a whole upgrade: the old
// agent from Start to Exit and the candidate from Start to active, one
// Step per input, as the simulator does (one op = one device upgraded).
func BenchmarkFullUpgrade(b *testing.B) {
	base := []Record{{Kind: RecInstalled, To: v1}}
	m := marker(1, v2)
	stop := CommandReceived{Handle: 1, Verb: core.VerbUpgradeStop, Request: core.CommandRequest{
		Schema: 1, Verb: core.VerbUpgradeStop, UpgradeStop: &core.UpgradeStopArgs{Attempt: 1, TargetVersion: v2}}}
	installed := []core.Version{v1}
	both := []core.Version{v1, v2}
	oldCfg, newCfg := testConfig(v1), testConfig(v2)
	committed := append(cutoverJournal(1), Record{Kind: RecCommitted, Attempt: 1, From: v1, To: v2})
	steps := 0
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for b.Loop() {
		old := New(oldCfg)
		old.Step(t0, Start{Journal: base, Current: v1, Installed: installed})
		old.Step(t0, MarkerPut{Marker: m})
		old.Step(t0, DownloadDone{Attempt: 1})
		old.Step(t0, SelfTestDone{Attempt: 1})
		old.Step(t0, SwapDone{Attempt: 1, To: v2})
		cand := New(newCfg)
		cand.Step(t0, Start{CandidateAttempt: 1, Journal: cutoverJournal(1), Current: v2, Installed: both})
		old.Step(t0, CandidateStarted{Attempt: 1})
		old.Step(t0, TimerFired{Timer: TimerHeartbeat})
		if len(old.Step(t0, stop)) != 3 {
			b.Fatal("stop not answered")
		}
		cand.Step(t0, TimerFired{Timer: TimerCandidatePoll})
		cand.Step(t0, JournalRead{Records: committed})
		if cand.Role() != RoleActive {
			b.Fatal("candidate did not take over")
		}
		steps += 13
	}
	b.ReportMetric(float64(steps)/float64(b.N), "steps/op")
}

// BenchmarkIdleAgentMemory reports the heap retained by idle agents (one
// deployment, running, heartbeating) as bytes/agent: the figure that bounds
// a 100,000-device simulation.
func BenchmarkIdleAgentMemory(b *testing.B) {
	const n = 1000
	agents := make([]*Agent, n)
	var before, after runtime.MemStats
	per := 0.0
	b.ReportAllocs()
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range agents {
			a := New(testConfig(v1))
			a.Step(t0, Start{Journal: []Record{{Kind: RecInstalled, To: v1}}, Current: v1, Installed: []core.Version{v1}})
			a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 1})
			a.Step(t0, WorkloadStatus{Deployment: "web", Generation: 1, Phase: core.PhaseRunning})
			a.Step(t0, TimerFired{Timer: TimerHeartbeat})
			agents[i] = a
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(agents)
		clear(agents)
	}
	b.ReportMetric(per, "B/agent")
}
