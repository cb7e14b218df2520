package sim_test

import (
	"testing"

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
	b.ReportMetric(float64(events)/float64(b.N), "events/run")
}

func BenchmarkClean1k(b *testing.B)        { benchScenario(b, "clean-upgrade-1k.yaml", 0) }
func BenchmarkFlakyNetwork1k(b *testing.B) { benchScenario(b, "flaky-network.yaml", 0) }
func BenchmarkScale10k(b *testing.B)       { benchScenario(b, "scale-10k.yaml", 0) }
func BenchmarkSmall100(b *testing.B)       { benchScenario(b, "clean-upgrade-1k.yaml", 100) }
