package natsim

import (
	"errors"
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
func (c *client) Message(conn *Conn, _ int, m *Msg)          { conn.Respond(m, []byte("ok")) }
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

// A partition is noticed at once (the interface goes down): writes made
// meanwhile wait in the reconnect buffer, time out at their deadline, and
// still land, in order, after the reconnect; the watch, whose consumer the
// server kept, resumes after the last revision it delivered.
func TestWritesBufferDuringAPartitionAndTheWatchResumes(t *testing.T) {
	k, n, _, b := setup(t)
	clock = k.Now
	wc, pc := newClient2(), newClient2()
	watcher := n.Dial(wc, ConnOptions{})
	writer := n.Dial(pc, ConnOptions{})
	watcher.WatchFrom(1, "kv", ">", 0, time.Second)
	writer.Write(1, &Entry{Bucket: "kv", Key: "a", Op: OpPut, Value: []byte("1")}, time.Second)
	run(k, time.Second)
	writer.SetLink(false, false, false)
	watcher.SetLink(false, false, false)
	t0 := k.Now()
	writer.Write(2, &Entry{Bucket: "kv", Key: "a", Op: OpPut, Value: []byte("2")}, 5*time.Second)
	writer.Write(3, &Entry{Bucket: "kv", Key: "b", Op: OpPut, Value: []byte("x")}, 5*time.Second)
	writer.Write(4, &Entry{Bucket: "kv", Key: "a", Op: OpPut, Value: []byte("3")}, 5*time.Second)
	run(k, time.Minute)
	if b.Revision() != 1 {
		t.Fatalf("writes crossed a partition: revision %d", b.Revision())
	}
	for tok := uint64(2); tok <= 4; tok++ {
		if r := pc.writes[tok]; !errors.Is(r.err, ErrTimeout) || r.at != t0+5*time.Second || r.n != 1 {
			t.Fatalf("write %d during the partition: %+v, want one ErrTimeout at its deadline", tok, r)
		}
	}
	writer.SetLink(true, false, false)
	run(k, time.Minute)
	if b.Revision() != 4 {
		t.Fatalf("revision %d after heal, want 4: every buffered write lands", b.Revision())
	}
	if e, _ := b.Get("a"); string(e.Value) != "3" {
		t.Fatalf("a = %q after heal, want 3 (the buffer keeps the order)", e.Value)
	}
	if len(wc.values()) != 1 {
		t.Fatalf("partitioned watcher saw %v", wc.values())
	}
	watcher.SetLink(true, false, false)
	run(k, time.Minute)
	got := wc.values()
	if len(got) != 4 || got[0] != "1" || got[1] != "2" || got[2] != "x" || got[3] != "3" {
		t.Fatalf("resumed watch saw %v, want [1 2 x 3]: nothing lost, nothing twice", got)
	}
	if wc.inits != 1 {
		t.Fatalf("end-of-initial marker delivered %d times, want once", wc.inits)
	}
	if len(wc.states) != 2 || wc.states[0] || !wc.states[1] {
		t.Fatalf("connection states %v, want down then up", wc.states)
	}
}

// A request made during an outage waits out its deadline (nats.go does not
// fail it at once); before and after, it is answered or finds no
// responders.
func TestOutageAndNoResponders(t *testing.T) {
	k, n, _, _ := setup(t)
	req, resp := &client{}, &client{}
	rc := n.Dial(req, ConnOptions{})
	sc := n.Dial(resp, ConnOptions{})
	rc.RequestBytes("device-commands.d1.ping", nil, time.Second)
	run(k, 2*time.Second)
	sc.Subscribe(1, "device-commands.d1.>")
	run(k, time.Second)
	rc.RequestBytes("device-commands.d1.ping", nil, time.Second)
	run(k, 2*time.Second)
	n.SetServerUp(false)
	rc.RequestBytes("device-commands.d1.ping", nil, time.Second)
	run(k, 999*time.Millisecond)
	if len(req.replies) != 2 {
		t.Fatalf("a request during the outage was answered before its deadline: %v", req.replies)
	}
	run(k, time.Second)
	n.SetServerUp(true)
	run(k, 10*time.Second)
	rc.RequestBytes("device-commands.d1.ping", nil, time.Second)
	run(k, 2*time.Second)
	want := []error{ErrNoResponders, nil, ErrTimeout, nil}
	if len(req.replies) != len(want) {
		t.Fatalf("replies %v, want %v", req.replies, want)
	}
	for i := range want {
		if req.replies[i] != want[i] {
			t.Fatalf("reply %d = %v, want %v (all: %v)", i, req.replies[i], want[i], req.replies)
		}
	}
}

// The network does not retry a write whose request it lost: the writer
// learns ErrTimeout at the deadline and the write never lands. A
// duplicated write lands twice and is acknowledged once.
func TestLostWritesTimeOutAndDuplicatesLandTwice(t *testing.T) {
	k, n, p, b := setup(t)
	clock = k.Now
	cl := newClient2()
	c := n.Dial(cl, ConnOptions{})
	p.drop = true
	c.Write(1, &Entry{Bucket: "kv", Key: "a", Op: OpPut, Value: []byte("1")}, 2*time.Second)
	run(k, time.Minute)
	if b.Revision() != 0 {
		t.Fatal("the network retried a write it lost")
	}
	if r := cl.writes[1]; !errors.Is(r.err, ErrTimeout) || r.at != 2*time.Second || r.n != 1 {
		t.Fatalf("lost write: %+v, want one ErrTimeout at its deadline", r)
	}
	p.drop, p.dup = false, true
	c.Write(2, &Entry{Bucket: "kv", Key: "a", Op: OpPut, Value: []byte("2")}, 2*time.Second)
	run(k, time.Second)
	h, _ := b.History("a")
	if b.Revision() != 2 || len(h) != 2 {
		t.Fatalf("duplicate write: revision %d, history %d; want both applied", b.Revision(), len(h))
	}
	if r := cl.writes[2]; r.err != nil || r.rev != 1 || r.n != 1 {
		t.Fatalf("duplicated write: %+v, want one acknowledgement of revision 1", r)
	}
}

func TestRequestTimesOutWhenTheRequestIsLost(t *testing.T) {
	k, n, p, _ := setup(t)
	req := &client{}
	rc := n.Dial(req, ConnOptions{})
	n.Dial(&client{}, ConnOptions{}).Subscribe(1, "x")
	p.drop = true
	rc.RequestBytes("x", nil, time.Second)
	run(k, 3*time.Second)
	if len(req.replies) != 1 || req.replies[0] != ErrTimeout {
		t.Fatalf("replies %v, want a timeout", req.replies)
	}
}

// A watch created while the server is down (an operator restarting during a
// NATS outage) waits in the reconnect buffer; created once connected, it
// must still end its initial replay, or the client's recovery latch never
// closes (regression: swarm-seed88).
func TestWatchCreatedDuringOutageEndsItsInitialReplay(t *testing.T) {
	k, n, _, b := setup(t)
	b.Put(0, "a", []byte("1"), nil)
	n.SetServerUp(false)
	wc := newClient2()
	c := n.Dial(wc, ConnOptions{})
	c.WatchFrom(1, "kv", ">", 0, 30*time.Second)
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
	if err, failed := wc.failed[1]; failed {
		t.Fatalf("watch creation failed: %v", err)
	}
}
