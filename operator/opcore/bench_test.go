package opcore

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// fleetOf builds a converged core with n devices (10 sites, 4 rings), five
// deployments (one per two sites, plus one for every device) and one agent
// rollout, after the first tick placed everything.
func fleetOf(b *testing.B, n int) (*Operator, time.Time, [][]byte) {
	b.Helper()
	op := New(Config{})
	now := t0
	op.Step(now, KVReplayed{})
	op.Step(now, CachesSynced{})
	for i := 0; i < n; i++ {
		op.Step(now, DeviceUpsert{Device: DeviceRecord{Name: fmt.Sprintf("dev-%06d", i),
			Labels: map[string]string{"site": fmt.Sprintf("s%d", i%10), "ring": fmt.Sprintf("r%d", i%4)}}})
	}
	for d := 0; d < 4; d++ {
		op.Step(now, DeploymentUpsert{Spec: DeploymentSpec{Name: fmt.Sprintf("app%d", d), Generation: 1,
			Selector: core.LabelSelector{MatchExpressions: []core.SelectorRequirement{{Key: "site", Operator: core.OpIn,
				Values: []string{fmt.Sprintf("s%d", 2*d), fmt.Sprintf("s%d", 2*d+1)}}}},
			Workload: Workload{Name: "app", Version: "1.0"}, Rollout: Strategy{MaxUnavailable: Amount{Value: 10, Percent: true}}}})
	}
	op.Step(now, DeploymentUpsert{Spec: DeploymentSpec{Name: "base", Generation: 1,
		Workload: Workload{Name: "base", Version: "1.0"}}})
	op.Step(now, AgentRolloutUpsert{Spec: AgentRolloutSpec{Name: "agent", Generation: 1,
		Version:  core.MustParseVersion("v1.1.0"),
		Artifact: core.ArtifactRef{Object: "a/v1.1.0", SHA256: sha, Size: 1},
		Selector: core.LabelSelector{MatchLabels: map[string]string{"ring": "r0"}},
		Rollout:  Strategy{Waves: []Amount{{Value: 1, Percent: true}}, MaxUnavailable: Amount{Value: 50}}}})
	op.Step(now, Tick{})
	hbs := make([][]byte, 3)
	for i := range hbs {
		hbs[i], _ = core.Heartbeat{AgentVersion: core.MustParseVersion("v1.0.0"), Seq: uint32(i + 1), UptimeSec: 10}.Encode()
	}
	return op, now, hbs
}

var benchSizes = []int{10_000, 100_000}

// cpuTime is the process's user+system CPU time. Benchmarks report it per op
// (cpu-ns/op) beside wall-clock ns/op: the shared build machine is
// oversubscribed, and there wall time measures the run queue.
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

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("dev-%06d", i)
	}
	return out
}

// BenchmarkLoadAndPlace: from an empty core to every device placed (one
// op = the whole fleet loaded, five deployments, one rollout, first tick).
func BenchmarkLoadAndPlace(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			defer reportCPU(b, cpuTime())
			var heap uint64
			for i := 0; i < b.N; i++ {
				op, _, _ := fleetOf(b, n)
				if op.DesiredKeys() < n {
					b.Fatalf("%d keys for %d devices", op.DesiredKeys(), n)
				}
				b.StopTimer()
				var ms runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms)
				heap = ms.HeapAlloc
				runtime.KeepAlive(op)
				b.StartTimer()
			}
			b.ReportMetric(float64(heap)/float64(n), "live-B/device")
		})
	}
}

// BenchmarkHeartbeat: one live heartbeat (the fleet's most frequent input).
func BenchmarkHeartbeat(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			op, now, hbs := fleetOf(b, n)
			devs := names(n)
			b.ResetTimer()
			defer reportCPU(b, cpuTime())
			for i := 0; i < b.N; i++ {
				op.Step(now.Add(time.Duration(i)*time.Microsecond), KVPut{Bucket: core.BucketDeviceHeartbeat,
					Key: devs[i%n], Value: hbs[i%3]})
			}
		})
	}
}

// BenchmarkStateReport: one device-state report (aggregation input).
func BenchmarkStateReport(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			op, now, _ := fleetOf(b, n)
			devs := names(n)
			const m = 1000
			keys, vals := make([]string, m), make([][]byte, m)
			for i := range m {
				ph := core.PhaseRunning
				if (i/(m/2))%2 == 1 {
					ph = core.PhaseApplying
				}
				keys[i] = core.DeviceStateKey(devs[i*(n/m)], "base")
				vals[i], _ = core.DeviceState{Device: devs[i*(n/m)], Deployment: "base", Generation: 1, Phase: ph,
					LastEventAt: int64(i)}.Encode()
			}
			b.ResetTimer()
			defer reportCPU(b, cpuTime())
			for i := 0; i < b.N; i++ {
				// Alternate Running and Applying for the same device.
				j := (i % (m / 2)) + (i/(m/2)%2)*(m/2)
				op.Step(now, KVPut{Bucket: core.BucketDeviceState, Key: keys[j], Value: vals[j]})
			}
		})
	}
}

// BenchmarkTick: a tick with 100 dirty devices (status flush, planning).
func BenchmarkTick(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			op, now, _ := fleetOf(b, n)
			op.Step(now, Tick{})
			devs := names(n)
			vals := map[string][2][]byte{}
			for _, d := range devs {
				r, _ := core.DeviceState{Device: d, Deployment: "base", Generation: 1, Phase: core.PhaseRunning, LastEventAt: 1}.Encode()
				f, _ := core.DeviceState{Device: d, Deployment: "base", Generation: 1, Phase: core.PhaseFailed, LastEventAt: 2, LastError: "x"}.Encode()
				vals[d] = [2][]byte{r, f}
			}
			b.ResetTimer()
			defer reportCPU(b, cpuTime())
			for i := 0; i < b.N; i++ {
				for j := 0; j < 100; j++ {
					d := devs[(i*100+j)%n]
					op.Step(now, KVPut{Bucket: core.BucketDeviceState, Key: core.DeviceStateKey(d, "base"), Value: vals[d][i%2]})
				}
				op.Step(now, Tick{})
			}
		})
	}
}

// BenchmarkHeartbeatRound: one op is a heartbeat interval of the fleet:
// every device heartbeats once (spread over 20 s; offline after 30 s) with
// a tick every second, so offline deadlines expire and are pushed again
// and lastSeen moves often enough to patch statuses: the steady state of a
// large fleet, where expire and flush dominate.
func BenchmarkHeartbeatRound(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			op, now, hbs := fleetOf(b, n)
			devs := names(n)
			const interval = 20 * time.Second
			step := interval / time.Duration(n)
			perTick := n / int(interval/time.Second)
			b.ResetTimer()
			defer reportCPU(b, cpuTime())
			for i := 0; i < b.N; i++ {
				for j, d := range devs {
					now = now.Add(step)
					op.Step(now, KVPut{Bucket: core.BucketDeviceHeartbeat, Key: d, Value: hbs[j%3]})
					if (j+1)%perTick == 0 {
						op.Step(now, Tick{})
					}
				}
			}
		})
	}
}
