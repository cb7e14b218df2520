package sim

import (
	"os"
	"runtime/debug"
)

// MemoryBudget is the soft memory limit of a batch simulation: the 4 GiB
// budget of a 100,000-device run less headroom for memory the Go runtime
// does not count (measured peak RSS at 100k: 3.5 GiB).
const MemoryBudget = 3840 << 20

// UseBatchGC sets the garbage collector up for a batch simulation, unless
// the environment sets GOGC or GOMEMLIMIT: GOGC=400, trading memory for
// less collection (most of what a run allocates is short-lived), but never
// past MemoryBudget, near which the collector runs as often as it must.
// `flotilla sim` and the simulator's benchmarks use it, so that the
// benchmarks measure what users run. It returns a function that restores
// the previous settings.
func UseBatchGC() (restore func()) {
	gc, limit := -2, int64(-2)
	if os.Getenv("GOGC") == "" {
		gc = debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		limit = debug.SetMemoryLimit(MemoryBudget)
	}
	return func() {
		if gc != -2 {
			debug.SetGCPercent(gc)
		}
		if limit != -2 {
			debug.SetMemoryLimit(limit)
		}
	}
}
