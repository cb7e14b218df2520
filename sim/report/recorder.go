package report

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// Defaults for Options.
const (
	DefaultInterval  = 30 * time.Second
	DefaultMaxPoints = 500
)

// Options tune how densely a Recorder samples.
type Options struct {
	// Interval is the simulated time between samples at the start of the
	// run; 0 means DefaultInterval.
	Interval time.Duration
	// MaxPoints bounds the samples kept: when a run outlives
	// Interval×MaxPoints, every other sample is dropped and the interval
	// doubles, so a 30-day scenario still yields at most MaxPoints (+1 for
	// the final sample). 0 means DefaultMaxPoints; values below 4 count as 4.
	MaxPoints int
}

// Meta identifies a run; it is known before the run starts.
type Meta struct {
	Scenario string
	File     string
	Seed     uint64
	Devices  int
	// Replay is the one-line command that replays the run, shown in the
	// report next to the seed.
	Replay string
}

// Recorder collects one run's curves and events while the simulator runs.
// It is cheap: the simulator asks Due (one comparison) before each event
// and builds counts only when a sample is due, at most a few hundred times a
// run. It reads no clock and is not safe for concurrent use — like the
// simulation it belongs to.
type Recorder struct {
	run       Run
	interval  time.Duration
	maxPoints int
	next      time.Duration // the next grid point to fill
	ended     bool

	versions column
	phases   column
	online   bool // whether Online is tracked
	open     map[int]bool
}

// NewRecorder starts recording a run.
func NewRecorder(meta Meta, opts Options) *Recorder {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.MaxPoints == 0 {
		opts.MaxPoints = DefaultMaxPoints
	}
	opts.MaxPoints = max(opts.MaxPoints, 4)
	return &Recorder{
		run: Run{
			Scenario: meta.Scenario, File: meta.File, Seed: meta.Seed,
			Devices: meta.Devices, Replay: meta.Replay,
		},
		interval:  opts.Interval,
		maxPoints: opts.MaxPoints,
		versions:  column{less: versionLess},
		phases:    column{less: phaseLess},
		open:      map[int]bool{},
	}
}

// Interval is the current sampling interval (it doubles as long runs are
// thinned out).
func (r *Recorder) Interval() time.Duration { return r.interval }

// Next is the simulated time of the next sample owed: a driver that runs
// the kernel in chunks (k.Run(rec.Next()), then Sample) samples exactly on
// the grid without scheduling events of its own.
func (r *Recorder) Next() time.Duration { return r.next }

// Due reports whether a sample is owed at simulated time now: call it before
// handling the events at now and, when it is true, call Sample with the
// counts as they stand (the state that held up to now).
func (r *Recorder) Due(now time.Duration) bool { return !r.ended && now >= r.next }

// Sample records the fleet's state at every sampling grid point up to now
// that has not been filled yet: the counts given are taken to have held
// since the previous call, which is true when the simulator calls it before
// handling the events at now. It returns whether anything was recorded; a
// call that is not Due is a no-op, so calling it more often is harmless.
//
// versions maps agent version (as printed, e.g. "v1.1.0") to device count;
// phases maps upgrade phase to device count; online is the number of
// devices online, or a negative number when the simulator does not track it.
// The maps are read, never kept.
func (r *Recorder) Sample(now time.Duration, versions map[string]int, phases map[core.AgentUpgradePhase]int, online int) bool {
	if !r.Due(now) {
		return false
	}
	for g := r.next; g <= now; g = r.next {
		r.appendPoint(g, versions, phases, online)
		r.next = g + r.interval
		if len(r.run.Times) >= r.maxPoints {
			r.thin()
		}
	}
	return true
}

// End records the state at the end of the run (simulated time now, off the
// grid if need be) and sets the run's simulated time. Samples after End are
// ignored.
func (r *Recorder) End(now time.Duration, versions map[string]int, phases map[core.AgentUpgradePhase]int, online int) {
	if r.ended {
		return
	}
	if n := len(r.run.Times); n > 0 && now <= r.run.Times[n-1] {
		// The final state replaces the last sample: it is what held then.
		now = r.run.Times[n-1]
		r.run.Times = r.run.Times[:n-1]
		r.versions.truncate(n - 1)
		r.phases.truncate(n - 1)
		if r.online {
			r.run.Online = r.run.Online[:n-1]
		}
	}
	r.appendPoint(now, versions, phases, online)
	r.run.SimTime = now
	r.ended = true
}

// Fault records a fault window whose start and end are known.
func (r *Recorder) Fault(w FaultWindow) {
	if w.End < w.Start {
		w.End = w.Start
	}
	r.run.Faults = append(r.run.Faults, w)
}

// FaultStart opens a fault window at simulated time at and returns its id
// for FaultEnd. A window still open at Finish closes at the end of the run.
func (r *Recorder) FaultStart(kind, target string, at time.Duration) int {
	r.run.Faults = append(r.run.Faults, FaultWindow{Kind: kind, Target: target, Start: at, End: at})
	id := len(r.run.Faults) - 1
	r.open[id] = true
	return id
}

// FaultEnd closes the window id at simulated time at, with the number of
// times the fault fired (0 if not counted). Unknown or closed ids are
// ignored.
func (r *Recorder) FaultEnd(id int, at time.Duration, hits uint64) {
	if !r.open[id] {
		return
	}
	delete(r.open, id)
	w := &r.run.Faults[id]
	w.End = max(at, w.Start)
	w.Hits = hits
}

// Mark records a notable instant (operator crash, rollout started, liveness
// phase begins).
func (r *Recorder) Mark(at time.Duration, kind, label string) {
	r.run.Markers = append(r.run.Markers, Marker{At: at, Kind: kind, Label: label})
}

// Violate records the invariant violation that stopped the run. Only the
// first one is kept: it is the one the seed reproduces.
func (r *Recorder) Violate(v Violation) {
	if r.run.Violation != nil {
		return
	}
	if v.Replay == "" {
		v.Replay = r.run.Replay
	}
	r.run.Violation = &v
}

// Expect records the outcome of one of the scenario's expectations.
func (r *Recorder) Expect(e Expectation) {
	r.run.Expectations = append(r.run.Expectations, e)
}

// Finish closes the run: events handled, wall time measured by the caller
// (the recorder reads no clock) and the result. An empty result is derived:
// Fail when a violation or a failed expectation was recorded, else Pass. If
// End was not called, the run ends at the last sample.
func (r *Recorder) Finish(events uint64, wall time.Duration, result Result) Run {
	run := r.run
	if !r.ended && len(run.Times) > 0 {
		run.SimTime = run.Times[len(run.Times)-1]
	}
	run.Events = events
	run.Wall = wall
	if result == "" {
		result = Pass
		if run.Violation != nil || slices.ContainsFunc(run.Expectations, func(e Expectation) bool { return !e.OK }) {
			result = Fail
		}
	}
	run.Result = result
	ids := make([]int, 0, len(r.open))
	for id := range r.open {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	run.Faults = slices.Clone(run.Faults)
	for _, id := range ids {
		run.Faults[id].End = max(run.SimTime, run.Faults[id].Start)
	}
	run.Versions = r.versions.series()
	run.Phases = r.phases.series()
	run.Times = slices.Clone(run.Times)
	run.Online = slices.Clone(run.Online)
	run.Faults = nilIfEmpty(run.Faults)
	return run
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func (r *Recorder) appendPoint(at time.Duration, versions map[string]int, phases map[core.AgentUpgradePhase]int, online int) {
	n := len(r.run.Times)
	r.run.Times = append(r.run.Times, at)
	r.versions.grow(n + 1)
	for k, v := range versions {
		r.versions.set(k, n, v)
	}
	r.phases.grow(n + 1)
	for k, v := range phases {
		r.phases.set(string(k), n, v)
	}
	if online >= 0 && !r.online {
		r.online = true
		r.run.Online = make([]int, n, max(n+1, 16))
		for i := range r.run.Online {
			r.run.Online[i] = -1 // not known before the simulator began reporting it
		}
	}
	if r.online {
		r.run.Online = append(r.run.Online, online)
	}
}

// thin drops every other sample and doubles the interval. Grid points are at
// multiples of the interval from 0, so keeping the even ones leaves a grid
// at twice the interval.
func (r *Recorder) thin() {
	keep := func(s []time.Duration) []time.Duration {
		out := s[:0]
		for i := 0; i < len(s); i += 2 {
			out = append(out, s[i])
		}
		return out
	}
	last := r.run.Times[len(r.run.Times)-1]
	r.run.Times = keep(r.run.Times)
	r.versions.thin()
	r.phases.thin()
	if r.online {
		r.run.Online = thinInts(r.run.Online)
	}
	if r.interval < math.MaxInt64/4 {
		r.interval *= 2
	}
	// The next grid point is the first multiple of the new interval after
	// the last point filled (which may just have been dropped).
	r.next = (last/r.interval + 1) * r.interval
}

func thinInts(s []int) []int {
	out := s[:0]
	for i := 0; i < len(s); i += 2 {
		out = append(out, s[i])
	}
	return out
}

// column holds one Series while it grows.
type column struct {
	keys   []string
	values [][]int
	less   func(a, b string) int
	n      int            // samples per row
	index  map[string]int // key → row, rebuilt when a key is inserted
}

func (c *column) grow(n int) {
	for i := range c.values {
		c.values[i] = append(c.values[i], 0)
	}
	c.n = n
}

func (c *column) set(key string, j, v int) {
	i, ok := c.index[key]
	if !ok {
		i, _ = slices.BinarySearchFunc(c.keys, key, c.less)
		c.keys = slices.Insert(c.keys, i, key)
		c.values = slices.Insert(c.values, i, make([]int, c.n, max(c.n, 16)))
		c.index = make(map[string]int, len(c.keys))
		for k, name := range c.keys {
			c.index[name] = k
		}
	}
	c.values[i][j] = v
}

func (c *column) thin() {
	for i := range c.values {
		c.values[i] = thinInts(c.values[i])
	}
	c.n = (c.n + 1) / 2
}

func (c *column) truncate(n int) {
	for i := range c.values {
		c.values[i] = c.values[i][:n]
	}
	c.n = n
}

func (c *column) series() Series {
	s := Series{Keys: slices.Clone(c.keys), Values: make([][]int, len(c.values))}
	for i, v := range c.values {
		s.Values[i] = slices.Clone(v)
	}
	if s.Keys == nil {
		s.Keys = []string{}
	}
	return s
}

// versionLess orders agent versions by semantic version; strings that do not
// parse come after, in byte order.
func versionLess(a, b string) int {
	va, ea := core.ParseVersion(a)
	vb, eb := core.ParseVersion(b)
	switch {
	case ea == nil && eb == nil:
		if c := va.Compare(vb); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	case ea == nil:
		return -1
	case eb == nil:
		return 1
	}
	return cmp.Compare(a, b)
}

// phaseLess orders upgrade phases in protocol order; unknown phases come
// after, in byte order.
func phaseLess(a, b string) int {
	ia := slices.Index(core.UpgradePhases, core.AgentUpgradePhase(a))
	ib := slices.Index(core.UpgradePhases, core.AgentUpgradePhase(b))
	if ia < 0 {
		ia = len(core.UpgradePhases)
	}
	if ib < 0 {
		ib = len(core.UpgradePhases)
	}
	if ia != ib {
		return cmp.Compare(ia, ib)
	}
	return cmp.Compare(a, b)
}
