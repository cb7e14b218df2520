package kernel

import (
	"testing"
	"time"
)

type recorder struct{ got []uint64 }

func (r *recorder) Handle(k *Kernel, ev *Event) {
	r.got = append(r.got, ev.A)
	k.Record(1).U(ev.A).Done()
}

func TestEventsRunInTimeThenScheduleOrder(t *testing.T) {
	k := New(1)
	r := &recorder{}
	k.At(5*time.Second, Event{Target: r, A: 3})
	k.At(1*time.Second, Event{Target: r, A: 1})
	k.At(5*time.Second, Event{Target: r, A: 4}) // same time: scheduled later runs later
	k.At(2*time.Second, Event{Target: r, A: 2})
	if err := k.Run(time.Hour); err != nil {
		t.Fatal(err)
	}
	want := []uint64{1, 2, 3, 4}
	for i := range want {
		if r.got[i] != want[i] {
			t.Fatalf("order %v, want %v", r.got, want)
		}
	}
	if k.Now() != time.Hour {
		t.Fatalf("now %v after Run(1h) with an empty heap", k.Now())
	}
}

func TestRunStopsAtHorizon(t *testing.T) {
	k := New(1)
	r := &recorder{}
	k.At(time.Minute, Event{Target: r, A: 1})
	k.At(2*time.Minute, Event{Target: r, A: 2})
	k.Run(90 * time.Second)
	if len(r.got) != 1 || k.Pending() != 1 {
		t.Fatalf("handled %v, pending %d", r.got, k.Pending())
	}
}

func TestHeapOrdersManyEvents(t *testing.T) {
	k := New(7)
	rng := k.Stream("test")
	r := &recorder{}
	for i := 0; i < 10000; i++ {
		d := time.Duration(rng.IntN(1000)) * time.Millisecond
		k.At(d, Event{Target: r, A: uint64(d)})
	}
	k.Run(time.Hour)
	for i := 1; i < len(r.got); i++ {
		if r.got[i] < r.got[i-1] {
			t.Fatalf("event %d at %d before %d", i, r.got[i], r.got[i-1])
		}
	}
}

func TestStreamsAreIndependentAndSeeded(t *testing.T) {
	a := New(42).Stream("network").Uint64()
	b := New(42).Stream("network").Uint64()
	c := New(42).Stream("faults").Uint64()
	d := New(43).Stream("network").Uint64()
	if a != b {
		t.Fatal("same seed and name gave different streams")
	}
	if a == c || a == d {
		t.Fatal("different subsystem or seed gave the same stream")
	}
}

func TestTraceHashDependsOnContentAndOrder(t *testing.T) {
	run := func(vals ...uint64) string {
		k := New(1)
		for _, v := range vals {
			k.Record(2).U(v).S("x").Done()
		}
		return k.TraceHash()
	}
	if run(1, 2) != run(1, 2) {
		t.Fatal("identical traces hash differently")
	}
	if run(1, 2) == run(2, 1) {
		t.Fatal("reordered trace hashes the same")
	}
	// Large traces are hashed incrementally; the result must not depend on
	// where the buffer was flushed.
	vals := make([]uint64, 20000)
	for i := range vals {
		vals[i] = uint64(i)
	}
	if run(vals...) != run(vals...) {
		t.Fatal("large trace not reproducible")
	}
}

func BenchmarkKernelEvents(b *testing.B) {
	k := New(1)
	h := &selfScheduler{}
	for i := 0; i < 10000; i++ {
		k.At(time.Duration(i)*time.Millisecond, Event{Target: h})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k.Step()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

type selfScheduler struct{}

func (s *selfScheduler) Handle(k *Kernel, ev *Event) {
	k.Record(1).U(ev.A).Done()
	k.After(10*time.Second, Event{Target: s, A: ev.A + 1})
}

func TestEqualTimesRunInScheduleOrder(t *testing.T) {
	k := New(1)
	r := &recorder{}
	for i := 0; i < 1000; i++ {
		k.At(time.Second, Event{Target: r, A: uint64(i)})
	}
	k.Run(time.Hour)
	for i, v := range r.got {
		if v != uint64(i) {
			t.Fatalf("event %d ran as #%d", v, i)
		}
	}
}

// BenchmarkKernelMixed keeps 50,000 events pending with delays spread from
// milliseconds (network) to tens of seconds (timers), the shape of a
// 10k-device run; each handled event schedules one more.
func BenchmarkKernelMixed(b *testing.B) {
	k := New(1)
	h := &mixedScheduler{r: k.Stream("bench")}
	for i := 0; i < 50000; i++ {
		k.At(h.delay(), Event{Target: h, P: h})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k.Step()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

type mixedScheduler struct{ r interface{ IntN(int) int } }

func (s *mixedScheduler) delay() time.Duration {
	if s.r.IntN(2) == 0 {
		return time.Duration(1+s.r.IntN(50)) * time.Millisecond
	}
	return time.Duration(1+s.r.IntN(30)) * time.Second
}

func (s *mixedScheduler) Handle(k *Kernel, ev *Event) {
	k.Record(1).U(ev.A).Done()
	k.After(s.delay(), Event{Target: s, A: ev.A + 1, P: ev.P})
}

// chaos schedules more events from its handler (some at the same instant,
// some far ahead) and logs (time, id) of every event it handles. Times are
// whole milliseconds, so events scheduled from different instants collide.
type chaos struct {
	rng  interface{ IntN(int) int }
	next uint64
	log  [][2]int64
	want map[uint64]time.Duration // id -> scheduled time
	seq  []uint64                 // ids in scheduling order
}

func (c *chaos) schedule(k *Kernel, d time.Duration) {
	c.next++
	id := c.next
	c.want[id] = k.Now() + d
	c.seq = append(c.seq, id)
	k.After(d, Event{Target: c, A: id})
}

func (c *chaos) Handle(k *Kernel, ev *Event) {
	c.log = append(c.log, [2]int64{int64(k.Now()), int64(ev.A)})
	for n := c.rng.IntN(3); n > 0 && c.next < 20000; n-- {
		switch c.rng.IntN(4) {
		case 0:
			c.schedule(k, 0) // same instant: after everything already due now
		case 1:
			c.schedule(k, time.Duration(c.rng.IntN(5))*time.Millisecond)
		case 2:
			c.schedule(k, time.Duration(c.rng.IntN(50))*time.Millisecond)
		default:
			c.schedule(k, time.Duration(c.rng.IntN(3600))*time.Second)
		}
	}
}

// TestQueueMatchesReferenceOrder: whatever the mix of delays, events run in
// (time, scheduling order), also across Run horizons that stop before the
// next event and pushes made between Runs.
func TestQueueMatchesReferenceOrder(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		k := New(seed)
		c := &chaos{rng: k.Stream("chaos"), want: map[uint64]time.Duration{}}
		for i := 0; i < 200; i++ {
			c.schedule(k, time.Duration(c.rng.IntN(10))*time.Second)
		}
		for h := time.Duration(0); k.Pending() > 0; h += 7 * time.Minute {
			k.Run(h)
			// Between horizons, schedule from "outside" (as World does for
			// steps and faults): legal at any time >= now.
			c.schedule(k, time.Duration(c.rng.IntN(60000))*time.Millisecond)
			if c.next >= 20000 && h > 48*time.Hour {
				k.Run(1 << 62)
			}
		}
		// Reference: sort by (scheduled time, scheduling order).
		pos := map[uint64]int{}
		for i, id := range c.seq {
			pos[id] = i
		}
		if len(c.log) != len(c.seq) {
			t.Fatalf("seed %d: handled %d of %d events", seed, len(c.log), len(c.seq))
		}
		for i, l := range c.log {
			id := uint64(l[1])
			if time.Duration(l[0]) != c.want[id] {
				t.Fatalf("seed %d: event %d ran at %v, scheduled for %v", seed, id, time.Duration(l[0]), c.want[id])
			}
			if i > 0 {
				p := c.log[i-1]
				if p[0] > l[0] || (p[0] == l[0] && pos[uint64(p[1])] > pos[id]) {
					t.Fatalf("seed %d: event %d ran before %d against (time, schedule) order", seed, p[1], id)
				}
			}
		}
	}
}
