package natsim

import (
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/sim/kernel"
)

type fixedPolicy struct {
	drop, dup bool
}

func (p *fixedPolicy) Fate(*Conn, Dir, bool) Fate {
	return Fate{Delay: 10 * time.Millisecond, Drop: p.drop, Dup: p.dup}
}

type client struct {
	entries []*Entry
	inits   int
	replies []error
	states  []bool
}

func (c *client) WatchEntry(_ *Conn, _ int, e *Entry) {
	if e == nil {
		c.inits++
		return
	}
	c.entries = append(c.entries, e)
}
func (c *client) Message(conn *Conn, _ int, m *Msg)          { conn.Respond(m, []byte("ok"), nil) }
func (c *client) Reply(_ *Conn, _ uint64, _ *Msg, err error) { c.replies = append(c.replies, err) }
func (c *client) ConnState(_ *Conn, up bool)                 { c.states = append(c.states, up) }
func (c *client) values() (out []string) {
	for _, e := range c.entries {
		out = append(out, string(e.Value))
	}
	return out
}

func setup(t *testing.T) (*kernel.Kernel, *Net, *fixedPolicy, *Bucket) {
	t.Helper()
	k := kernel.New(1)
	s := NewServer()
	b, _ := s.CreateBucket("kv", 5)
	p := &fixedPolicy{}
	return k, NewNet(k, s, p), p, b
}

func run(k *kernel.Kernel, d time.Duration) { k.Run(k.Now() + d) }

func TestWritesQueueDuringAPartitionAndTheWatchResumes(t *testing.T) {
	k, n, _, b := setup(t)
	wc, pc := &client{}, &client{}
	watcher := n.Connect(wc)
	writer := n.Connect(pc)
	watcher.Watch(1, "kv", ">", WatchLast, 0)
	writer.Put("kv", "a", []byte("1"), nil)
	run(k, time.Second)
	writer.SetLink(false, false, false)
	watcher.SetLink(false, false, false)
	writer.Put("kv", "a", []byte("2"), nil)
	writer.Put("kv", "b", []byte("x"), nil)
	writer.Put("kv", "a", []byte("3"), nil) // latest per key wins in the client's queue
	run(k, time.Minute)
	if b.Revision() != 1 {
		t.Fatalf("writes crossed a partition: revision %d", b.Revision())
	}
	writer.SetLink(true, false, false)
	run(k, time.Minute)
	if e, _ := b.Get("a"); string(e.Value) != "3" {
		t.Fatalf("a = %q after heal, want 3", e.Value)
	}
	if len(wc.values()) != 1 {
		t.Fatalf("partitioned watcher saw %v", wc.values())
	}
	watcher.SetLink(true, false, false)
	run(k, time.Minute)
	got := wc.values()
	if len(got) != 3 || got[0] != "1" || got[1] != "x" || got[2] != "3" {
		t.Fatalf("resumed watch saw %v, want [1 x 3]: the queued writes, newest value of a last", got)
	}
	if wc.inits != 1 {
		t.Fatalf("end-of-initial marker delivered %d times, want once", wc.inits)
	}
	if len(wc.states) != 2 || wc.states[0] || !wc.states[1] {
		t.Fatalf("connection states %v, want down then up", wc.states)
	}
}

func TestOutageAndNoResponders(t *testing.T) {
	k, n, _, _ := setup(t)
	req, resp := &client{}, &client{}
	rc := n.Connect(req)
	sc := n.Connect(resp)
	rc.Request("device-commands.d1.ping", nil, nil, time.Second)
	run(k, 2*time.Second)
	sc.Subscribe(1, "device-commands.d1.>")
	rc.Request("device-commands.d1.ping", nil, nil, time.Second)
	run(k, 2*time.Second)
	n.SetServerUp(false)
	rc.Request("device-commands.d1.ping", nil, nil, time.Second)
	run(k, 2*time.Second)
	n.SetServerUp(true)
	run(k, 10*time.Second)
	rc.Request("device-commands.d1.ping", nil, nil, time.Second)
	run(k, 2*time.Second)
	want := []error{ErrNoResponders, nil, ErrDisconnected, nil}
	if len(req.replies) != len(want) {
		t.Fatalf("replies %v, want %v", req.replies, want)
	}
	for i := range want {
		if req.replies[i] != want[i] {
			t.Fatalf("reply %d = %v, want %v (all: %v)", i, req.replies[i], want[i], req.replies)
		}
	}
}

func TestDroppedWritesAreDelayedAndDuplicatesAppliedTwice(t *testing.T) {
	k, n, p, b := setup(t)
	c := n.Connect(&client{})
	p.drop = true
	c.Put("kv", "a", []byte("1"), nil)
	run(k, time.Second)
	if b.Revision() != 0 {
		t.Fatal("a dropped write arrived before the retry delay")
	}
	run(k, 5*time.Second)
	if b.Revision() != 1 {
		t.Fatal("a dropped write was never retried")
	}
	p.drop, p.dup = false, true
	c.Put("kv", "a", []byte("2"), nil)
	run(k, time.Second)
	h, _ := b.History("a")
	if b.Revision() != 3 || len(h) != 3 {
		t.Fatalf("duplicate write: revision %d, history %d; want both applied", b.Revision(), len(h))
	}
}

func TestRequestTimesOutWhenTheRequestIsLost(t *testing.T) {
	k, n, p, _ := setup(t)
	req := &client{}
	rc := n.Connect(req)
	n.Connect(&client{}).Subscribe(1, "x")
	p.drop = true
	rc.Request("x", nil, nil, time.Second)
	run(k, 3*time.Second)
	if len(req.replies) != 1 || req.replies[0] != ErrTimeout {
		t.Fatalf("replies %v, want a timeout", req.replies)
	}
}

// A watch created while the server is down (an operator restarting during a
// NATS outage) must still end its initial replay once connected, or the
// client's recovery latch never closes (regression: swarm-seed88).
func TestWatchCreatedDuringOutageEndsItsInitialReplay(t *testing.T) {
	k, n, _, b := setup(t)
	b.Put(0, "a", []byte("1"), nil)
	n.SetServerUp(false)
	wc := &client{}
	c := n.Connect(wc)
	c.Watch(1, "kv", ">", WatchLast, 0)
	run(k, 5*time.Second)
	if wc.inits != 0 {
		t.Fatalf("end-of-initial marker delivered while disconnected")
	}
	n.SetServerUp(true)
	run(k, 10*time.Second)
	if wc.inits != 1 {
		t.Fatalf("end-of-initial marker delivered %d times after reconnect, want once", wc.inits)
	}
	if got := wc.values(); len(got) != 1 || got[0] != "1" {
		t.Fatalf("watch replayed %v, want [1]", got)
	}
}
