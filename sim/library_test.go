package sim_test

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// libraryFiles lists the scenario library: the curated scenarios and the
// shrunk regressions that sweeps found (scenarios/regressions/).
func libraryFiles(t testing.TB) []string {
	files, err := filepath.Glob("../scenarios/*.yaml")
	if err != nil || len(files) < 12 {
		t.Fatalf("scenario library: %d files (%v), want at least 12", len(files), err)
	}
	regressions, err := filepath.Glob("../scenarios/regressions/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return append(files, regressions...)
}

// runWith runs one scenario under a GOMAXPROCS setting.
func runWith(t testing.TB, sc *scenario.Scenario, procs, devices int) *sim.Result {
	t.Helper()
	old := runtime.GOMAXPROCS(procs)
	defer runtime.GOMAXPROCS(old)
	r, err := sim.Run(sc, sim.Options{Devices: devices})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestLibraryIsDeterministicSmall is the fast form of the library check that
// plain `go test ./...` runs: every scenario on a small fleet, twice (under
// GOMAXPROCS=1 and 2), with identical trace hashes and no invariant
// violated. The full-size run with expectations is library_full_test.go
// (build tag integration, `make test-sim`).
func TestLibraryIsDeterministicSmall(t *testing.T) {
	for _, file := range libraryFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			sc, err := scenario.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			if sc.Duration.D > 0 && sc.Fleet.HeartbeatInterval.D > 0 && sc.Duration.D/sc.Fleet.HeartbeatInterval.D > 2000 {
				t.Skip("long simulated horizon; covered by the full library run")
			}
			// Small scenarios (the shrunk regressions) run at their own size:
			// their timing bounds are tuned to it.
			devices := 30
			if sc.Fleet.Devices <= devices {
				devices = 0
			}
			a := runWith(t, sc, 1, devices)
			b := runWith(t, sc, 2, devices)
			if a.TraceSHA256 != b.TraceSHA256 || a.Events != b.Events {
				t.Fatalf("same seed, different runs: %s (%d events) vs %s (%d events)\nreplay: %s",
					a.TraceSHA256, a.Events, b.TraceSHA256, b.Events, a.Replay)
			}
			if len(a.Violations) > 0 {
				t.Fatalf("invariant violated on %d devices: %v\nreplay: %s", max(devices, sc.Fleet.Devices), a.Violations[0], a.Replay)
			}
			pinned.check(t, filepath.Base(file), a)
		})
	}
	pinned.save(t)
}

var updateTraces = flag.Bool("update-traces", false, "rewrite testdata/trace-hashes.txt with this build's trace hashes")

// pinned holds the trace hash of every library scenario's small run as of
// the last intended change of behaviour (testdata/trace-hashes.txt). A
// trace covers every input and effect of every agent and operator core, so
// a refactoring or optimisation that claims to change nothing must leave
// them all as they are (ADR 0091); a change of behaviour shows up here,
// to be reviewed and committed with -update-traces. The hashes are those of
// this toolchain on amd64 (another Go release may sort or fuse
// floating-point operations differently).
var pinned = &traceHashes{file: "testdata/trace-hashes.txt"}

type traceHashes struct {
	file string
	once sync.Once
	mu   sync.Mutex
	want map[string]string
	got  map[string]string
}

func (h *traceHashes) load() {
	h.once.Do(func() {
		h.want, h.got = map[string]string{}, map[string]string{}
		f, err := os.Open(h.file)
		if err != nil {
			return // none yet: every check fails until -update-traces
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			name, hash, ok := strings.Cut(line, " ")
			if ok {
				h.want[name] = strings.TrimSpace(hash)
			}
		}
	})
}

func (h *traceHashes) check(t *testing.T, name string, r *sim.Result) {
	t.Helper()
	h.load()
	h.mu.Lock()
	defer h.mu.Unlock()
	key := fmt.Sprintf("%s@%d", name, r.Devices)
	h.got[key] = r.TraceSHA256
	if *updateTraces {
		return
	}
	if want, ok := h.want[key]; !ok {
		t.Errorf("no pinned trace hash for %s in %s: run `go test ./sim -run TestLibraryIsDeterministicSmall -update-traces` and commit it", key, h.file)
	} else if want != r.TraceSHA256 {
		t.Errorf("trace of %s changed (%s, pinned %s): the cores or the simulated world now behave differently.\n"+
			"If that is intended, review it and run `go test ./sim -run TestLibraryIsDeterministicSmall -update-traces`; replay: %s",
			key, r.TraceSHA256, want, r.Replay)
	}
}

func (h *traceHashes) save(t *testing.T) {
	if !*updateTraces {
		return
	}
	keys := make([]string, 0, len(h.got))
	for k := range h.got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Trace hashes of the library's small runs (sim/library_test.go, ADR 0091).\n")
	b.WriteString("# Regenerate after an intended change of behaviour: go test ./sim -run TestLibraryIsDeterministicSmall -update-traces\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %s\n", k, h.got[k])
	}
	if err := os.MkdirAll(filepath.Dir(h.file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDifferentSeedsDiverge(t *testing.T) {
	sc, err := scenario.Load("../scenarios/flaky-network.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := sim.Run(sc, sim.Options{Devices: 20, Seed: 1, SeedSet: true})
	b, _ := sim.Run(sc, sim.Options{Devices: 20, Seed: 2, SeedSet: true})
	if a.TraceSHA256 == b.TraceSHA256 {
		t.Fatal("seeds 1 and 2 produced the same trace: the seed does not reach the dice")
	}
}
