// Package report turns simulator runs into something people would rather
// look at than read: a self-contained offline HTML page with rollout curves
// over simulated time (devices per agent version, per upgrade phase), fault
// windows, markers and the violation with its replay command, plus a static
// SVG/PNG of the same curves for CI logs.
//
// The simulator fills a [Recorder] while it runs; [Recorder.Finish] yields a
// [Run]; a [Report] is a list of runs written with [WriteHTML], [WriteSVG]
// or [WritePNG]. The package reads no clock and draws no random numbers: the
// same run gives the same bytes.
package report

import (
	"time"
)

// Result is how a run ended.
type Result string

const (
	// Pass: no invariant violated and every expectation held.
	Pass Result = "pass"
	// Fail: an invariant was violated or an expectation did not hold.
	Fail Result = "fail"
	// Error: the run could not be carried out (bad scenario, internal error).
	Error Result = "error"
)

// Report is what one `flotilla sim run`, `sweep` or `make sim` shows: one
// entry per scenario run, in the order given.
type Report struct {
	// Title heads the page; empty means "Flotilla simulation report".
	Title string `json:"title,omitempty"`
	Runs  []Run  `json:"runs"`
}

// Run is everything recorded about one scenario run.
type Run struct {
	Scenario string        `json:"scenario"`
	File     string        `json:"file,omitempty"` // scenario file, for humans
	Seed     uint64        `json:"seed"`
	Devices  int           `json:"devices"`
	Events   uint64        `json:"events"`
	SimTime  time.Duration `json:"sim_ns"`
	Wall     time.Duration `json:"wall_ns"`
	Result   Result        `json:"result"`
	// Replay is the one-line command that replays this run exactly.
	Replay string `json:"replay,omitempty"`

	// Times are the sample times (simulated time since the start of the run),
	// strictly increasing. Versions, Phases and Online have one value per
	// entry of Times.
	Times    []time.Duration `json:"times_ns"`
	Versions Series          `json:"versions"`
	Phases   Series          `json:"phases"`
	// Online is the number of devices online at each sample; nil when the
	// simulator did not report it.
	Online []int `json:"online,omitempty"`

	Faults       []FaultWindow `json:"faults,omitempty"`
	Markers      []Marker      `json:"markers,omitempty"`
	Violation    *Violation    `json:"violation,omitempty"`
	Expectations []Expectation `json:"expectations,omitempty"`
}

// EventsPerSecond is Events divided by the wall time, 0 when no wall time
// was recorded.
func (r Run) EventsPerSecond() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return float64(r.Events) / r.Wall.Seconds()
}

// Series is a set of named curves sampled at the run's Times: Values[i][j]
// is the number of devices in Keys[i] at Times[j]. Keys are ordered
// deterministically (versions by semantic version, phases in protocol
// order) and a key that appears late is zero at earlier samples.
type Series struct {
	Keys   []string `json:"keys"`
	Values [][]int  `json:"values"`
}

// Value is the count of key at sample j, 0 when the key never appeared.
func (s Series) Value(key string, j int) int {
	for i, k := range s.Keys {
		if k == key {
			return s.Values[i][j]
		}
	}
	return 0
}

// FaultWindow is a period during which a fault was active. An instantaneous
// fault (a power cut) has End == Start.
type FaultWindow struct {
	Kind string `json:"kind"`
	// Target says whom the fault hit, for humans: "10% of devices",
	// "site=a", "dev-0042", "nats".
	Target string        `json:"target,omitempty"`
	Start  time.Duration `json:"start_ns"`
	End    time.Duration `json:"end_ns"`
	// Hits counts how often the fault fired inside the window, if known.
	Hits uint64 `json:"hits,omitempty"`
}

// Marker is a notable instant: an operator crash, a rollout step, the
// liveness phase starting.
type Marker struct {
	At    time.Duration `json:"at_ns"`
	Kind  string        `json:"kind"`
	Label string        `json:"label,omitempty"`
}

// Violation is the invariant that stopped a run.
type Violation struct {
	Checker string        `json:"checker"`
	Message string        `json:"message"`
	At      time.Duration `json:"at_ns"`
	Seed    uint64        `json:"seed"`
	// Replay is the one-line command that reproduces the violation.
	Replay string `json:"replay"`
}

// Expectation is one of the scenario's `expect:` clauses and whether it held.
type Expectation struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}
