package report

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

type phases = map[core.AgentUpgradePhase]int

func secs(s ...int) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, v := range s {
		out[i] = time.Duration(v) * time.Second
	}
	return out
}

func TestRecorderSamplesOnAFixedGrid(t *testing.T) {
	rec := NewRecorder(Meta{Scenario: "grid", Devices: 10}, Options{Interval: 10 * time.Second})
	if !rec.Due(0) {
		t.Fatal("a fresh recorder owes the sample at t=0")
	}
	rec.Sample(0, map[string]int{"v1.0.0": 10}, phases{core.UpgradeIdle: 10}, 10)
	if rec.Due(9 * time.Second) {
		t.Fatal("Due before the next grid point")
	}
	if rec.Sample(9*time.Second, map[string]int{"v1.0.0": 99}, nil, 10) {
		t.Fatal("Sample off-grid recorded something")
	}
	// A quiet period: the state held since 0 is recorded at 10s, 20s, 30s.
	rec.Sample(35*time.Second, map[string]int{"v1.0.0": 9, "v1.1.0": 1}, phases{core.UpgradeIdle: 9, core.UpgradeCommitted: 1}, 9)
	rec.End(42*time.Second, map[string]int{"v1.1.0": 10}, phases{core.UpgradeCommitted: 10}, 10)
	run := rec.Finish(1234, 2*time.Second, "")

	if want := secs(0, 10, 20, 30, 42); !reflect.DeepEqual(run.Times, want) {
		t.Fatalf("Times = %v, want %v", run.Times, want)
	}
	wantV := Series{Keys: []string{"v1.0.0", "v1.1.0"}, Values: [][]int{{10, 9, 9, 9, 0}, {0, 1, 1, 1, 10}}}
	if !reflect.DeepEqual(run.Versions, wantV) {
		t.Errorf("Versions = %+v, want %+v", run.Versions, wantV)
	}
	wantP := Series{Keys: []string{"Idle", "Committed"}, Values: [][]int{{10, 9, 9, 9, 0}, {0, 1, 1, 1, 10}}}
	if !reflect.DeepEqual(run.Phases, wantP) {
		t.Errorf("Phases = %+v, want %+v", run.Phases, wantP)
	}
	if want := []int{10, 9, 9, 9, 10}; !reflect.DeepEqual(run.Online, want) {
		t.Errorf("Online = %v, want %v", run.Online, want)
	}
	if run.SimTime != 42*time.Second || run.Events != 1234 || run.Result != Pass {
		t.Errorf("run = %v sim, %d events, %s; want 42s, 1234, pass", run.SimTime, run.Events, run.Result)
	}
	if got := run.EventsPerSecond(); got != 617 {
		t.Errorf("EventsPerSecond = %v, want 617", got)
	}
}

func TestRecorderOrdersKeysDeterministically(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
		less func(a, b string) int
	}{
		{"versions by semver, not bytes", []string{"v1.10.0", "v1.9.0", "v1.2.3-rc.1", "v1.2.3"},
			[]string{"v1.2.3-rc.1", "v1.2.3", "v1.9.0", "v1.10.0"}, versionLess},
		{"unparseable versions last, by bytes", []string{"zzz", "v2.0.0", "none", "v1.0.0"},
			[]string{"v1.0.0", "v2.0.0", "none", "zzz"}, versionLess},
		{"phases in protocol order", []string{"RolledBack", "Committed", "Idle", "Staging", "Reverting"},
			[]string{"Idle", "Staging", "Committed", "Reverting", "RolledBack"}, phaseLess},
		{"unknown phases after the known ones", []string{"Zombie", "Idle", "Alien"},
			[]string{"Idle", "Alien", "Zombie"}, phaseLess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Keys arrive one per sample, in the given order: the rows must
			// end up sorted whatever order the maps produce them in.
			c := column{less: tt.less}
			for j, k := range tt.in {
				c.grow(j + 1)
				c.set(k, j, j+1)
			}
			s := c.series()
			if !reflect.DeepEqual(s.Keys, tt.want) {
				t.Fatalf("keys = %v, want %v", s.Keys, tt.want)
			}
			// Each key's value sits at the sample where it appeared; zero before.
			for j, k := range tt.in {
				for jj := range tt.in {
					want := 0
					if jj == j {
						want = j + 1
					}
					if got := s.Value(k, jj); got != want {
						t.Errorf("%s at sample %d = %d, want %d", k, jj, got, want)
					}
				}
			}
		})
	}
}

func TestRecorderThinsLongRunsToMaxPoints(t *testing.T) {
	const maxPoints = 50
	rec := NewRecorder(Meta{Scenario: "days"}, Options{Interval: 30 * time.Second, MaxPoints: maxPoints})
	horizon := 30 * 24 * time.Hour // a device offline for a month
	calls := 0
	for now := time.Duration(0); now <= horizon; now += 7 * time.Second {
		if rec.Due(now) {
			calls++
			// The value is the sample's grid time in minutes, so thinning
			// errors show up as mismatches below.
			rec.Sample(now, map[string]int{"v1.0.0": int(now / time.Minute)}, nil, -1)
		}
	}
	run := rec.Finish(0, 0, "")
	if n := len(run.Times); n > maxPoints || n < maxPoints/2 {
		t.Fatalf("%d samples for a 30-day run, want between %d and %d", n, maxPoints/2, maxPoints)
	}
	step := run.Times[1] - run.Times[0]
	for j := range run.Times {
		if run.Times[j] != time.Duration(j)*step {
			t.Fatalf("sample %d at %v, want an even grid of %v", j, run.Times[j], step)
		}
		// The counts given at the first call at or after a grid point g
		// were those at that call (within 7s of g).
		got := time.Duration(run.Versions.Values[0][j]) * time.Minute
		if d := got - run.Times[j]; d < -time.Minute || d > 7*time.Second+time.Minute {
			t.Errorf("sample %d at %v holds the counts of %v", j, run.Times[j], got)
		}
	}
	if last := run.Times[len(run.Times)-1]; horizon-last > step {
		t.Errorf("last sample at %v, more than one interval (%v) before the horizon %v", last, step, horizon)
	}
	if run.Online != nil {
		t.Errorf("Online = %v, want nil when never reported", run.Online)
	}
	if rec.Interval() != step {
		t.Errorf("Interval() = %v, want the thinned grid step %v", rec.Interval(), step)
	}
}

func TestRecorderFaultsMarkersViolation(t *testing.T) {
	rec := NewRecorder(Meta{Scenario: "faults", Seed: 42, Replay: "flotilla sim replay s.yaml --seed 42"}, Options{})
	rec.Sample(0, map[string]int{"v1.0.0": 3}, nil, -1)
	p := rec.FaultStart("partition", "site=a", 10*time.Minute)
	o := rec.FaultStart("nats-outage", "nats", 20*time.Minute)
	rec.Fault(FaultWindow{Kind: "power-cut", Target: "dev-1", Start: 15 * time.Minute, End: 14 * time.Minute})
	rec.FaultEnd(p, 25*time.Minute, 17)
	rec.FaultEnd(p, 99*time.Minute, 1) // already closed: ignored
	rec.FaultEnd(99, time.Minute, 1)   // unknown: ignored
	rec.Mark(31*time.Minute, "operator-crash", "operator crash")
	rec.Violate(Violation{Checker: "maxUnavailable", Message: "6 in flight, max 5", At: 40 * time.Minute, Seed: 42})
	rec.Violate(Violation{Checker: "later", Message: "ignored"})
	rec.End(40*time.Minute, map[string]int{"v1.0.0": 3}, nil, -1)
	run := rec.Finish(10, time.Second, "")

	want := []FaultWindow{
		{Kind: "partition", Target: "site=a", Start: 10 * time.Minute, End: 25 * time.Minute, Hits: 17},
		{Kind: "nats-outage", Target: "nats", Start: 20 * time.Minute, End: 40 * time.Minute}, // still open: ends with the run
		{Kind: "power-cut", Target: "dev-1", Start: 15 * time.Minute, End: 15 * time.Minute},
	}
	if !reflect.DeepEqual(run.Faults, want) {
		t.Errorf("Faults = %+v\nwant %+v", run.Faults, want)
	}
	_ = o
	if run.Violation == nil || run.Violation.Checker != "maxUnavailable" || run.Violation.Replay != "flotilla sim replay s.yaml --seed 42" {
		t.Errorf("Violation = %+v, want the first one with the run's replay command", run.Violation)
	}
	if run.Result != Fail {
		t.Errorf("Result = %s, want fail after a violation", run.Result)
	}
	if len(run.Markers) != 1 || run.Markers[0].At != 31*time.Minute {
		t.Errorf("Markers = %+v", run.Markers)
	}
}

func TestRecorderResult(t *testing.T) {
	tests := []struct {
		name   string
		expect []Expectation
		given  Result
		want   Result
	}{
		{"no expectations passes", nil, "", Pass},
		{"all held", []Expectation{{Name: "a", OK: true}}, "", Pass},
		{"one failed", []Expectation{{Name: "a", OK: true}, {Name: "b"}}, "", Fail},
		{"caller's result wins", nil, Error, Error},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := NewRecorder(Meta{}, Options{})
			for _, e := range tt.expect {
				rec.Expect(e)
			}
			if got := rec.Finish(0, 0, tt.given).Result; got != tt.want {
				t.Errorf("Result = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRecorderEndReplacesASampleAtTheSameTime(t *testing.T) {
	rec := NewRecorder(Meta{}, Options{Interval: time.Minute})
	rec.Sample(time.Minute, map[string]int{"v1": 5}, nil, 5)
	rec.End(time.Minute, map[string]int{"v1": 4, "v2": 1}, nil, 5)
	rec.Sample(5*time.Minute, map[string]int{"v1": 99}, nil, 5) // after End: ignored
	run := rec.Finish(0, 0, "")
	if want := secs(0, 60); !reflect.DeepEqual(run.Times, want) {
		t.Fatalf("Times = %v, want %v", run.Times, want)
	}
	if got := []int{run.Versions.Value("v1", 1), run.Versions.Value("v2", 1)}; !reflect.DeepEqual(got, []int{4, 1}) {
		t.Errorf("final sample = %v, want the End counts [4 1]", got)
	}
}

func TestRecorderIsDeterministic(t *testing.T) {
	a, b := demoRun(demoConfig{name: "d", seed: 3, devices: 200, horizon: time.Hour, crashRate: 0.1}),
		demoRun(demoConfig{name: "d", seed: 3, devices: 200, horizon: time.Hour, crashRate: 0.1})
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two runs of the same seed recorded different data")
	}
}

// BenchmarkRecorderSample is the cost of one due sample with a typical
// rollout's keys (3 versions, 9 phases): the simulator pays it a few hundred
// times a run, whatever the fleet size.
func BenchmarkRecorderSample(b *testing.B) {
	versions := map[string]int{"v1.0.0": 60000, "v1.1.0": 39000, "v1.1.1": 1000}
	ph := phases{}
	for i, p := range core.UpgradePhases {
		ph[p] = 1000 * (i + 1)
	}
	var rec *Recorder
	var now time.Duration
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%5000 == 0 { // a run's worth of samples, then a fresh run
			rec, now = NewRecorder(Meta{Devices: 100000}, Options{Interval: time.Second, MaxPoints: 500}), 0
		}
		i++
		if !rec.Sample(now, versions, ph, 99000) {
			b.Fatal("sample not due")
		}
		now += rec.Interval() // every call is due: this is the cost per recorded sample
	}
}

// BenchmarkRecorderDue is the per-event cost the simulator pays.
func BenchmarkRecorderDue(b *testing.B) {
	rec := NewRecorder(Meta{}, Options{})
	rec.Sample(0, nil, nil, -1)
	n := 0
	for b.Loop() {
		if rec.Due(time.Second) {
			n++
		}
	}
	_ = n
}

// TestRecorderChunkedDriver drives the recorder the way docs/sim-report.md
// tells the simulator to: run the kernel up to Next, then Sample.
func TestRecorderChunkedDriver(t *testing.T) {
	rec := NewRecorder(Meta{}, Options{Interval: time.Minute, MaxPoints: 8})
	devicesOn2 := func(now time.Duration) int { return int(now / (10 * time.Second)) } // the "world"
	horizon := 20 * time.Minute
	for now := rec.Next(); now <= horizon; now = rec.Next() {
		// k.Run(now) would go here.
		if !rec.Sample(now, map[string]int{"v2": devicesOn2(now)}, nil, -1) {
			t.Fatalf("sample at Next()=%v not taken", now)
		}
	}
	rec.End(horizon, map[string]int{"v2": devicesOn2(horizon)}, nil, -1)
	run := rec.Finish(0, 0, "")
	if n := len(run.Times); n > 9 {
		t.Errorf("%d samples, want at most MaxPoints+1", n)
	}
	for j, tm := range run.Times {
		if got := run.Versions.Values[0][j]; got != devicesOn2(tm) {
			t.Errorf("sample at %v = %d, want %d (the state at that time)", tm, got, devicesOn2(tm))
		}
	}
	if run.Times[len(run.Times)-1] != horizon {
		t.Errorf("last sample at %v, want the horizon", run.Times[len(run.Times)-1])
	}
}

// A sweep may run seeds in worker processes: a Run survives JSON both ways.
func TestRunRoundTripsThroughJSON(t *testing.T) {
	for _, run := range demoReport().Runs {
		b, err := json.Marshal(run)
		if err != nil {
			t.Fatal(err)
		}
		var back Run
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, run) {
			t.Errorf("%s: run changed through JSON", run.Scenario)
		}
	}
}
