package sim

import (
	"errors"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/sim/natsim"
)

// probe is a dialed client of the world's NATS, as a shell on the v2 calls.
type probe struct {
	states  []time.Duration // ConnState changes: + up, - down (time since start)
	ups     []bool
	acked   int
	timeout int
	seen    int
	w       *World
}

func (p *probe) WatchEntry(_ *natsim.Conn, _ int, e *natsim.Entry) {
	if e != nil {
		p.seen++
	}
}
func (p *probe) Message(*natsim.Conn, int, *natsim.Msg)         {}
func (p *probe) Reply(*natsim.Conn, uint64, *natsim.Msg, error) {}
func (p *probe) ConnState(_ *natsim.Conn, up bool) {
	p.states = append(p.states, p.w.k.Now())
	p.ups = append(p.ups, up)
}
func (p *probe) WriteDone(_ *natsim.Conn, _, _ uint64, err error) {
	switch {
	case err == nil:
		p.acked++
	case errors.Is(err, natsim.ErrTimeout):
		p.timeout++
	}
}

func world(t *testing.T, faults string) *World {
	t.Helper()
	sc := mustScenario(t, "name: f\nduration: 1h\nfleet: {devices: 3, agent_version: v1.0.0}\nfaults:\n"+faults+
		"expect: {converged_within: 30m}\n")
	w, err := New(sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.schedule()
	return w
}

// ack-loss loses write acknowledgements in its window only: the writes land.
func TestAckLossLosesAcknowledgementsInItsWindow(t *testing.T) {
	w := world(t, "  - {kind: ack-loss, rate: 50%, at: 1m, for: 1m}\n")
	p := &probe{w: w}
	c := w.net.Dial(p, natsim.ConnOptions{})
	write := func(n int) {
		for i := 0; i < n; i++ {
			c.Write(uint64(i), &natsim.Entry{Bucket: "device-info", Key: "probe", Op: natsim.OpPut, Value: []byte{byte(i)}},
				time.Second)
			w.k.Run(w.k.Now() + 100*time.Millisecond)
		}
		w.k.Run(w.k.Now() + 2*time.Second)
	}
	w.k.Run(10 * time.Second)
	write(100)
	if p.acked != 100 || p.timeout != 0 {
		t.Fatalf("before the window: %d acknowledged, %d timed out", p.acked, p.timeout)
	}
	w.k.Run(time.Minute + time.Second)
	p.acked = 0
	write(200)
	if p.timeout < 60 || p.timeout > 140 || p.acked+p.timeout != 200 {
		t.Fatalf("in the window (50%%): %d acknowledged, %d timed out", p.acked, p.timeout)
	}
	// The devices' agents write through the same network (agent/link over
	// natsim v2), so their lost acknowledgements count too.
	if w.firedCounts["ack-loss"] < uint64(p.timeout) {
		t.Fatalf("ack-loss fired %d times for %d lost acknowledgements", w.firedCounts["ack-loss"], p.timeout)
	}
	b, _ := w.srv.Bucket("device-info")
	if e, err := b.Get("probe"); err != nil || e.Value[0] != 199 {
		t.Fatalf("the last write did not land: %v %v", e, err)
	}
}

// nats-restart drops every connection at once, brings the server back after
// down, and leaves existing v2 watches quiet.
func TestNATSRestartDropsConnectionsAndQuietsWatches(t *testing.T) {
	w := world(t, "  - {kind: nats-restart, at: 1m, down: 3s}\n")
	p := &probe{w: w}
	c := w.net.Dial(p, natsim.ConnOptions{})
	c.WatchFrom(1, "device-info", "probe2", 0, time.Second)
	w.k.Run(time.Minute + time.Second)
	if len(p.states) != 1 || p.ups[0] || p.states[0] != time.Minute {
		t.Fatalf("ConnState %v %v, want down at 1m", p.ups, p.states)
	}
	w.k.Run(time.Minute + 5*time.Second)
	if len(p.states) != 2 || !p.ups[1] || p.states[1] < time.Minute+3*time.Second {
		t.Fatalf("ConnState %v %v, want up after 1m3s", p.ups, p.states)
	}
	b, _ := w.srv.Bucket("device-info")
	b.Put(w.k.Now(), "probe2", []byte("x"), nil)
	w.k.Run(w.k.Now() + 3*time.Second)
	if p.seen != 0 {
		t.Fatal("the watch delivered right after the restart")
	}
	c.StopWatch(1)
	c.WatchFrom(1, "device-info", "probe2", 0, time.Second)
	w.k.Run(w.k.Now() + time.Second)
	if p.seen != 1 || w.firedCounts["nats-restart"] != 1 {
		t.Fatalf("recreated watch saw %d entries; fired %d", p.seen, w.firedCounts["nats-restart"])
	}
}

// dead-link black-holes a device's link: a dialed connection of the device
// notices only by missed pings, and comes back after the window.
func TestDeadLinkIsNoticedByMissedPings(t *testing.T) {
	w := world(t, "  - {kind: dead-link, names: [dev-1], at: 1m, for: 2m}\n")
	p := &probe{w: w}
	c := w.net.Dial(p, natsim.ConnOptions{PingInterval: 10 * time.Second, MaxPingsOut: 3, ReconnectWait: time.Second})
	w.k.Run(time.Minute + time.Millisecond)
	d := w.devs[1]
	d.applyLinkTo(c) // as a process of dev-1 started now does
	w.k.Run(time.Minute + 30*time.Second)
	if len(p.states) != 0 {
		t.Fatalf("noticed before the pings ran out: %v", p.states)
	}
	w.k.Run(2 * time.Minute)
	if len(p.states) != 1 || p.ups[0] || p.states[0] <= time.Minute+30*time.Second || p.states[0] > time.Minute+40*time.Second {
		t.Fatalf("ConnState %v %v, want down 30-40s after the cut", p.ups, p.states)
	}
	w.k.Run(3*time.Minute + time.Millisecond)
	d.applyLinkTo(c) // the fault event heals the device's processes' links
	w.k.Run(3*time.Minute + 2*time.Second)
	if len(p.ups) != 2 || !p.ups[1] {
		t.Fatalf("ConnState %v %v, want up after the window", p.ups, p.states)
	}
}
