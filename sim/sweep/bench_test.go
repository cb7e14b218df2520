package sweep_test

import (
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Whole-scenario benchmarks for `make bench` (mk/simdepth.mk runs each in a
// process of its own so that peak-RSS is that benchmark's). Metrics:
// events/s (wall), cpu-events/s, wall-s (per run), peak-RSS-MiB (the
// process's high-water mark), B/device (live heap after the run, world
// still referenced, per device).

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func peakRSSMiB() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024 // Linux: KiB
}

func loadOrSkip(b *testing.B, path string) *scenario.Scenario {
	b.Helper()
	sc, err := scenario.Load(path)
	if err != nil {
		b.Skipf("scenario: %v", err)
	}
	return sc
}

func benchRun(b *testing.B, sc *scenario.Scenario, devices int, mustPass bool) {
	defer sim.UseBatchGC()() // as flotilla sim does
	var events uint64
	var wall, cpu time.Duration
	var live float64
	var sim1 float64
	n := 0
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var m0 runtime.MemStats
		runtime.ReadMemStats(&m0)
		c0, t0 := cpuNow(), time.Now()
		w, err := sim.New(sc, sim.Options{Devices: devices})
		if err != nil {
			b.Fatal(err)
		}
		r := w.Run()
		wall += time.Since(t0)
		cpu += cpuNow() - c0
		if mustPass && !r.Passed {
			b.Fatalf("%s on %d devices failed: %v %v", sc.Name, r.Devices, r.Violations, r.Expectations)
		}
		events += r.Events
		sim1 += r.SimSeconds
		n = r.Devices
		runtime.GC()
		var m1 runtime.MemStats
		runtime.ReadMemStats(&m1)
		live += float64(m1.HeapAlloc) - float64(m0.HeapAlloc)
		runtime.KeepAlive(w)
	}
	b.ReportMetric(float64(events)/wall.Seconds(), "events/s")
	b.ReportMetric(float64(events)/cpu.Seconds(), "cpu-events/s")
	b.ReportMetric(wall.Seconds()/float64(b.N), "wall-s")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s")
	b.ReportMetric(sim1/float64(b.N), "sim-s")
	b.ReportMetric(peakRSSMiB(), "peak-RSS-MiB")
	b.ReportMetric(live/float64(b.N)/float64(n), "B/device")
}

// A faulted agent upgrade (scale-10k.yaml: loss, a 5 % partition, power
// cuts during cutover, an operator crash) at 1k, 10k and 100k devices.
func BenchmarkFaultedUpgrade1k(b *testing.B) {
	benchRun(b, loadOrSkip(b, "../../scenarios/scale-10k.yaml"), 1000, false)
}

func BenchmarkFaultedUpgrade10k(b *testing.B) {
	benchRun(b, loadOrSkip(b, "../../scenarios/scale-10k.yaml"), 10000, true)
}

func BenchmarkFaultedUpgrade100k(b *testing.B) {
	benchRun(b, loadOrSkip(b, "../../scenarios/scale-100k.yaml"), 0, true)
}

// seedScenario is a 100-device fleet through one simulated hour: an
// upgrade under loss, a partition and power cuts, and one device offline
// for 50 minutes, so the run lasts the hour.
const seedScenario = `name: seed-100x1h
duration: 1h
fleet: {devices: 100, labels: {site: [a, b, c, d]}, agent_version: v1.0.0, heartbeat_interval: 10s}
steps:
  - at: 1m
    upgrade_agent: {version: v1.1.0, strategy: {waves: ["10%", "100%"], max_unavailable: "20%"}}
faults:
  - {kind: drop, rate: 0.02, at: 0s, for: 20m}
  - {kind: partition, devices: "5%", at: 3m, for: 5m}
  - {kind: power-cut, when: CutoverReady, devices: "5%", down: 20s}
  - {kind: offline, devices: "1", at: 2m, for: 50m}
expect:
  converged_within: 8m
`

// BenchmarkSeed100x1h is one sweep seed: its cpu-s is the cost of a seed,
// 3600/cpu-s the seeds per CPU-hour.
func BenchmarkSeed100x1h(b *testing.B) {
	sc, err := scenario.Parse("seed-100x1h.yaml", []byte(seedScenario))
	if err != nil {
		b.Fatal(err)
	}
	c0 := cpuNow()
	benchRun(b, sc, 0, false)
	b.ReportMetric(3600/((cpuNow()-c0).Seconds()/float64(b.N)), "seeds/CPU-h")
}

// BenchmarkIdleDevice100k is the live heap per idle virtual device: 100,000
// devices booted (production agent core, disk, connection, KV entries)
// with nothing to do.
func BenchmarkIdleDevice100k(b *testing.B) {
	sc, err := scenario.Parse("idle.yaml", []byte(`name: idle-100k
duration: 10m
fleet: {devices: 100000, labels: {site: [a, b, c, d]}, agent_version: v1.0.0, heartbeat_interval: 30s}
expect: {converged_within: 5m}
`))
	if err != nil {
		b.Fatal(err)
	}
	benchRun(b, sc, 0, true)
}
