// Package sweep runs one scenario under many seeds, spread over the cores:
// `flotilla sim sweep`. Each run is one single-threaded, deterministic
// simulation (sim.World); runs share no mutable state, so they run as
// goroutines, one per worker. In swarm mode each seed also draws its own
// fault mix (Swarm).
package sweep

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/report"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Config is one sweep.
type Config struct {
	// File names the scenario (for replay commands); Data is its YAML.
	File string
	Data []byte
	// Seeds runs seeds From, From+1, …, From+Seeds-1.
	From, Seeds uint64
	// Parallel is the number of workers (0: GOMAXPROCS).
	Parallel int
	// KeepGoing runs every seed; otherwise the sweep stops at the first
	// failure (seeds already running finish).
	KeepGoing bool
	// Swarm draws a fault mix per seed.
	Swarm bool
	// Devices overrides the fleet size when > 0.
	Devices int
	// Plant names the planted bug the runs were made with (for the
	// replay command only; Plant must already have been called).
	Plant string
	// Progress, when set, gets a progress bar (carriage returns).
	Progress io.Writer
	// OnResult, when set, is called (serialised) for every finished seed.
	OnResult func(SeedResult)
	// Report records report curves (sim/report) for every failing seed
	// and the first passing one.
	Report bool
}

// SeedResult is one seed's run.
type SeedResult struct {
	Seed   uint64
	Swarm  string // the drawn fault mix (swarm mode)
	Result *sim.Result
	Err    error
	Report *report.Run   // with Config.Report
	CPU    time.Duration // this run's wall time on its worker (its CPU time when workers ≤ cores and the machine is idle)
}

// Failed reports whether the seed failed (or could not run).
func (s SeedResult) Failed() bool { return s.Err != nil || s.Result == nil || !s.Result.Passed }

// Signature names what failed: the first violated invariant, else the first
// failed expectation.
func (s SeedResult) Signature() string {
	if s.Err != nil {
		return "error"
	}
	return Signature(s.Result)
}

// Signature names what made a run fail ("" when it passed): the first
// violated invariant ("invariant 2 stop-after-heartbeat"), else the first
// failed expectation ("expectation converged_within").
func Signature(r *sim.Result) string {
	if r == nil {
		return "error"
	}
	if len(r.Violations) > 0 {
		v := r.Violations[0]
		return fmt.Sprintf("invariant %d %s", v.Invariant, v.Name)
	}
	for _, e := range r.Expectations {
		if !e.Pass {
			return "expectation " + e.Name
		}
	}
	return ""
}

// Reports are the report runs kept by a sweep with Config.Report: every
// failing seed, then the first passing one.
func (s *Summary) Reports() []report.Run {
	var runs []report.Run
	for _, f := range s.Failures {
		if f.Report != nil {
			runs = append(runs, *f.Report)
		}
	}
	if s.FirstPass != nil && s.FirstPass.Report != nil {
		runs = append(runs, *s.FirstPass.Report)
	}
	return runs
}

// Summary is a finished sweep.
type Summary struct {
	Scenario   string
	Runs       int
	Passed     int
	Failures   []SeedResult // sorted by seed
	Events     uint64
	SimSeconds float64
	Wall       time.Duration
	RunTime    time.Duration // sum of the runs' wall times on their workers
	CPU        time.Duration // process CPU time (user+system) during the sweep
	Stopped    bool          // stopped early (first failure or cancelled)
	FirstPass  *SeedResult   // the lowest passing seed (for reports)
}

// Replay is the command that replays one seed of a sweep.
func (c Config) Replay(seed uint64) string {
	var b strings.Builder
	b.WriteString("flotilla sim ")
	if c.Swarm || c.Plant != "" {
		// replay does not know --swarm/--plant: re-run the one seed.
		fmt.Fprintf(&b, "sweep %s --from %d --seeds 1", c.File, seed)
		if c.Swarm {
			b.WriteString(" --swarm")
		}
		if c.Plant != "" {
			fmt.Fprintf(&b, " --plant %s", c.Plant)
		}
	} else {
		fmt.Fprintf(&b, "replay %s --seed %d", c.File, seed)
	}
	if c.Devices > 0 {
		fmt.Fprintf(&b, " --devices %d", c.Devices)
	}
	return b.String()
}

// Prepare parses the scenario for one seed (a fresh copy: runs share
// nothing) and, in swarm mode, draws its fault mix.
func Prepare(file string, data []byte, seed uint64, swarm bool) (*scenario.Scenario, string, error) {
	sc, err := scenario.Parse(file, data)
	if err != nil {
		return nil, "", err
	}
	desc := ""
	if swarm {
		desc = Swarm(sc, seed)
	}
	return sc, desc, nil
}

// RunSeed runs one seed.
func RunSeed(c Config, seed uint64) SeedResult {
	sr := SeedResult{Seed: seed}
	sc, desc, err := Prepare(c.File, c.Data, seed, c.Swarm)
	sr.Swarm = desc
	if err != nil {
		sr.Err = err
		return sr
	}
	t0 := time.Now()
	w, err := sim.New(sc, sim.Options{Seed: seed, SeedSet: true, Devices: c.Devices})
	if err != nil {
		sr.Err = err
		return sr
	}
	var r *sim.Result
	if c.Report {
		var run report.Run
		r, run = RunWithReport(w, sc, c.File, seed, c.Replay(seed))
		sr.Report = &run
	} else {
		r = w.Run()
	}
	sr.CPU = time.Since(t0)
	r.WallSeconds = sr.CPU.Seconds()
	r.Replay = c.Replay(seed)
	sr.Result = r
	return sr
}

// Run sweeps the seeds. It returns when every seed ran, at the first
// failure (unless KeepGoing), or when ctx is cancelled.
func Run(ctx context.Context, c Config) (*Summary, error) {
	if c.Seeds == 0 {
		return nil, fmt.Errorf("sweep: no seeds to run")
	}
	sc0, _, err := Prepare(c.File, c.Data, c.From, false)
	if err != nil {
		return nil, err
	}
	workers := c.Parallel
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = int(min(uint64(workers), c.Seeds))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Uint64
	var mu sync.Mutex
	sum := &Summary{Scenario: sc0.Name}
	bar := newProgress(c.Progress, c.Seeds)
	t0, cpu0 := time.Now(), cpuTime()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= c.Seeds {
					return
				}
				sr := RunSeed(c, c.From+i)
				mu.Lock()
				sum.Runs++
				sum.RunTime += sr.CPU
				if sr.Result != nil {
					sum.Events += sr.Result.Events
					sum.SimSeconds += sr.Result.SimSeconds
				}
				if sr.Failed() {
					sum.Failures = append(sum.Failures, sr)
					if !c.KeepGoing {
						sum.Stopped = true
						cancel()
					}
				} else {
					sum.Passed++
					if sum.FirstPass == nil || sr.Seed < sum.FirstPass.Seed {
						cp := sr
						sum.FirstPass = &cp
					}
					sr.Report = nil // only the first pass is kept (FirstPass)
				}
				if c.OnResult != nil {
					c.OnResult(sr)
				}
				bar.update(sum.Runs, len(sum.Failures), time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sum.Wall, sum.CPU = time.Since(t0), cpuTime()-cpu0
	bar.done(sum.Runs, len(sum.Failures), sum.Wall)
	if ctx.Err() != nil && uint64(sum.Runs) < c.Seeds {
		sum.Stopped = true
	}
	sort.Slice(sum.Failures, func(i, j int) bool { return sum.Failures[i].Seed < sum.Failures[j].Seed })
	return sum, nil
}

// progress draws a one-line bar on a terminal-ish writer.
type progress struct {
	w     io.Writer
	tty   bool
	total uint64
	last  time.Time
	tenth uint64
}

func newProgress(w io.Writer, total uint64) *progress {
	p := &progress{w: w, total: total}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(done, failed int, el time.Duration) {
	if p.w == nil || uint64(done) == p.total {
		return
	}
	if !p.tty {
		// A log, not a terminal: one line per tenth.
		if t := uint64(done) * 10 / p.total; t > p.tenth {
			p.tenth = t
			p.draw(done, failed, el)
			fmt.Fprintln(p.w)
		}
		return
	}
	if time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.draw(done, failed, el)
}

func (p *progress) draw(done, failed int, el time.Duration) {
	const width = 30
	fill := int(uint64(done) * width / p.total)
	rate := float64(done) / max(el.Seconds(), 1e-9)
	eta := ""
	if rate > 0 && uint64(done) < p.total {
		eta = " eta " + time.Duration(float64(p.total-uint64(done))/rate*float64(time.Second)).Round(time.Second).String()
	}
	cr := "\r"
	if !p.tty {
		cr = ""
	}
	fmt.Fprintf(p.w, "%s[%s%s] %d/%d seeds, %d failed, %.1f seeds/s%s   ",
		cr, strings.Repeat("#", fill), strings.Repeat(".", width-fill), done, p.total, failed, rate, eta)
}

func (p *progress) done(done, failed int, el time.Duration) {
	if p.w == nil {
		return
	}
	p.draw(done, failed, el)
	fmt.Fprintln(p.w)
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
