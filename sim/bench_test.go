package sim_test

import (
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// benchScenario runs a library scenario b.N times and reports events/s
// (per core: a run is one goroutine) with the production cores in the loop.
func benchScenario(b *testing.B, file string, devices int) {
	sc, err := scenario.Load("../scenarios/" + file)
	if err != nil {
		b.Fatal(err)
	}
	var events uint64
	b.ReportAllocs()
	defer sim.UseBatchGC()() // as flotilla sim does
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		r, err := sim.Run(sc, sim.Options{Devices: devices})
		if err != nil {
			b.Fatal(err)
		}
		if !r.Passed {
			b.Fatalf("scenario failed: %v %v", r.Violations, r.Expectations)
		}
		events += r.Events
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	// CPU time too: on a shared machine wall time measures the neighbours.
	b.ReportMetric(float64(events)/(cpuTime()-c0).Seconds(), "cpu-events/s")
	b.ReportMetric(float64(events)/float64(b.N), "events/run")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkClean1k(b *testing.B)  { benchScenario(b, "clean-upgrade-1k.yaml", 0) }
func BenchmarkScale10k(b *testing.B) { benchScenario(b, "scale-10k.yaml", 0) }
func BenchmarkSmall100(b *testing.B) { benchScenario(b, "clean-upgrade-1k.yaml", 100) }

// BenchmarkIdleDeviceMemory reports the live heap per idle virtual device
// (production agent core, disk, connection, KV entries) after boot.
func BenchmarkIdleDeviceMemory(b *testing.B) {
	sc, err := scenario.Parse("idle.yaml", []byte(`name: idle
duration: 1h
fleet: {devices: 10000, labels: {site: [a, b, c, d]}, agent_version: v1.0.0, heartbeat_interval: 30s}
deployments:
  - {name: web, selector: {site: a}, workload: {name: web, version: "1.0"}}
expect: {converged_within: 30m}
`))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		w, err := sim.New(sc, sim.Options{})
		if err != nil {
			b.Fatal(err)
		}
		r := w.Run()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/float64(r.Devices), "B/device")
		runtime.KeepAlive(w)
	}
}
