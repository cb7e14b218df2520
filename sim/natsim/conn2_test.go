package natsim

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/sim/kernel"
)

// client2 records what the v2 calls report.
type client2 struct {
	client
	writes  map[uint64]result2
	gets    map[uint64]result2
	failed  map[int]error
	replies map[uint64]error
	got     map[uint64]string
}

type result2 struct {
	rev uint64
	e   *Entry
	err error
	at  time.Duration
	n   int
}

func newClient2() *client2 {
	return &client2{writes: map[uint64]result2{}, gets: map[uint64]result2{}, failed: map[int]error{},
		replies: map[uint64]error{}, got: map[uint64]string{}}
}

var clock func() time.Duration

func (c *client2) WriteDone(_ *Conn, tok, rev uint64, err error) {
	r := c.writes[tok]
	c.writes[tok] = result2{rev: rev, err: err, at: clock(), n: r.n + 1}
}
func (c *client2) GetDone(_ *Conn, tok uint64, e *Entry, err error) {
	r := c.gets[tok]
	c.gets[tok] = result2{e: e, err: err, at: clock(), n: r.n + 1}
}
func (c *client2) WatchFailed(_ *Conn, id int, err error) { c.failed[id] = err }
func (c *client2) Reply(_ *Conn, tok uint64, m *Msg, err error) {
	if _, dup := c.replies[tok]; dup {
		panic("two replies for one token")
	}
	c.replies[tok] = err
	if m != nil {
		c.got[tok] = string(m.Data)
	}
}

func TestV2ConnectedWriteGetWatchRequest(t *testing.T) {
	k, n, _, _ := setup(t)
	clock = k.Now
	cl := newClient2()
	c := n.Dial(cl, ConnOptions{Name: "t"})
	c.WatchFrom(1, "kv", ">", 0, time.Second)
	run(k, time.Second)
	if cl.inits != 1 {
		t.Fatalf("end-of-replay markers: %d, want 1", cl.inits)
	}
	c.Write(7, &Entry{Bucket: "kv", Key: "a", Op: OpPut, Value: []byte("1")}, time.Second)
	c.Write(8, &Entry{Bucket: "nope", Key: "a", Op: OpPut, Value: []byte("1")}, time.Second)
	c.Write(9, &Entry{Bucket: "kv", Key: "a", Op: OpPut, Value: make([]byte, MaxPayload+1)}, time.Second)
	run(k, time.Second)
	if r := cl.writes[7]; r.err != nil || r.rev != 1 || r.n != 1 {
		t.Fatalf("write 7: %+v", r)
	}
	if r := cl.writes[8]; !errors.Is(r.err, ErrBucketNotFound) {
		t.Fatalf("write 8: %+v", r)
	}
	if r := cl.writes[9]; !errors.Is(r.err, ErrMaxPayload) {
		t.Fatalf("write 9: %+v", r)
	}
	if got := cl.values(); len(got) != 1 || got[0] != "1" {
		t.Fatalf("watch saw %v", got)
	}
	c.Get(1, "kv", "a", time.Second)
	c.Get(2, "kv", "b", time.Second)
	run(k, time.Second)
	if r := cl.gets[1]; r.err != nil || string(r.e.Value) != "1" {
		t.Fatalf("get a: %+v", r)
	}
	if r := cl.gets[2]; !errors.Is(r.err, ErrKeyNotFound) || r.e != nil {
		t.Fatalf("get b: %+v", r)
	}
	srv := n.Dial(&client{}, ConnOptions{})
	srv.Subscribe(1, "cmd.>")
	run(k, time.Second)
	tok := c.RequestBytes("cmd.x", []byte("hi"), time.Second)
	none := c.RequestBytes("other", []byte("hi"), time.Second)
	run(k, 2*time.Second)
	if cl.replies[tok] != nil || cl.got[tok] != "ok" {
		t.Fatalf("request: %v %q", cl.replies[tok], cl.got[tok])
	}
	if !errors.Is(cl.replies[none], ErrNoResponders) {
		t.Fatalf("request without responders: %v", cl.replies[none])
	}
	c.StopWatch(1)
	c.Write(10, &Entry{Bucket: "kv", Key: "a", Op: OpDelete}, time.Second)
	run(k, time.Second)
	if len(cl.entries) != 1 {
		t.Fatalf("a stopped watch delivered %d entries", len(cl.entries))
	}
	if r := cl.writes[10]; r.err != nil || r.rev != 2 {
		t.Fatalf("delete: %+v", r)
	}
}

// The activity check that rebuilds a watch after a server restart, at the
// phases measured on a real nats-server (TestMeasureRebuild, build tag
// measure): last message and stop relative to the watch's creation.
func TestWatchRebuildPhaseMatchesNatsGo(t *testing.T) {
	for _, tc := range []struct{ msg, stop, measured time.Duration }{
		{300 * time.Millisecond, 600 * time.Millisecond, 19400 * time.Millisecond},
		{300 * time.Millisecond, 3 * time.Second, 17 * time.Second},
		{300 * time.Millisecond, 8 * time.Second, 12 * time.Second},
		{300 * time.Millisecond, 12 * time.Second, 18 * time.Second},
		{2500 * time.Millisecond, 11 * time.Second, 9 * time.Second},
	} {
		k := kernel.New(1)
		s := NewServer()
		b, _ := s.CreateBucket("kv", 5)
		n := NewNet(k, s, zeroDelay{})
		cl := newClient2()
		clock = k.Now
		c := n.Dial(cl, ConnOptions{ReconnectWait: 250 * time.Millisecond})
		c.WatchFrom(1, "kv", ">", 0, time.Second)
		k.Run(tc.msg)
		b.Put(k.Now(), "a", []byte("1"), nil)
		k.Run(tc.stop)
		n.SetServerUp(false)
		k.Run(tc.stop + 200*time.Millisecond)
		n.SetServerUp(true)
		k.Run(tc.stop + 1200*time.Millisecond)
		b.Put(k.Now(), "a", []byte("2"), nil)
		for len(cl.entries) < 2 && k.Now() < tc.stop+time.Minute {
			k.Run(k.Now() + time.Millisecond)
		}
		got := k.Now() - tc.stop
		if d := got - tc.measured; d < -50*time.Millisecond || d > 50*time.Millisecond {
			t.Errorf("message at %v, stop at %v: rebuilt %v after the stop, nats.go %v", tc.msg, tc.stop, got, tc.measured)
		}
	}
}

type zeroDelay struct{}

func (zeroDelay) Fate(*Conn, Dir, bool) Fate { return Fate{} }

// randPolicy drops, duplicates and delays hops at random.
type randPolicy struct{ r *rand.Rand }

func (p randPolicy) Fate(*Conn, Dir, bool) Fate {
	f := Fate{Delay: time.Duration(1+p.r.IntN(400)) * time.Millisecond}
	f.Drop = p.r.IntN(10) == 0
	f.Dup = p.r.IntN(20) == 0
	return f
}

type tally struct {
	client2
	n       map[uint64]int
	revs    map[int][]uint64
	markers map[int]int
	check   func(tok, rev uint64)
}

func (c *tally) WriteDone(_ *Conn, tok, rev uint64, err error) {
	c.n[tok]++
	c.writes[tok] = result2{rev: rev, err: err}
	if err == nil {
		c.check(tok, rev)
	}
}
func (c *tally) GetDone(_ *Conn, tok uint64, _ *Entry, _ error) { c.n[tok]++ }
func (c *tally) Reply(_ *Conn, tok uint64, _ *Msg, _ error)     { c.n[tok|1<<62]++ }
func (c *tally) WatchFailed(_ *Conn, id int, _ error)           { c.revs[id] = nil; c.markers[id] = 0 }
func (c *tally) WatchEntry(_ *Conn, id int, e *Entry) {
	if e == nil {
		c.markers[id]++
		return
	}
	c.revs[id] = append(c.revs[id], e.Rev)
}

// Whatever the network and the server do, every v2 call gets exactly one
// result, a write that reported a revision holds it on the server, and a
// watch delivers each revision once, in order, and one end-of-replay
// marker per creation.
func TestV2ExactlyOneResultPerCallUnderChaos(t *testing.T) {
	outcomes := map[string]int{}
	for seed := uint64(1); seed <= 30; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		k := kernel.New(seed)
		s := NewServer()
		b, _ := s.CreateBucket("kv", 64)
		n := NewNet(k, s, randPolicy{r})
		cl := &tally{client2: *newClient2(), n: map[uint64]int{}, revs: map[int][]uint64{}, markers: map[int]int{}}
		clock = k.Now
		c := n.Dial(cl, ConnOptions{PingInterval: 2 * time.Second, ReconnectWait: time.Second, ReconnectBuf: 4000})
		srv := n.Dial(&client{}, ConnOptions{})
		srv.Subscribe(1, "svc.>")
		var toks []uint64
		var reqs []uint64
		values := map[uint64]string{}
		cl.check = func(tok, rev uint64) {
			h, _ := b.History(w2key(b, rev))
			for _, e := range h {
				if e.Rev == rev && string(e.Value) == values[tok] {
					return
				}
			}
			t.Fatalf("seed %d: write %d acknowledged revision %d, which the server does not hold", seed, tok, rev)
		}
		for step := 0; step < 400; step++ {
			k.Run(k.Now() + time.Duration(r.IntN(700))*time.Millisecond)
			timeout := time.Duration(100+r.IntN(3000)) * time.Millisecond
			tok := uint64(step + 1)
			switch r.IntN(12) {
			case 0, 1, 2:
				v := itoa(step)
				values[tok] = v
				c.Write(tok, &Entry{Bucket: "kv", Key: "k" + itoa(r.IntN(3)), Op: OpPut, Value: []byte(v)}, timeout)
				toks = append(toks, tok)
			case 3:
				c.Get(tok, "kv", "k1", timeout)
				toks = append(toks, tok)
			case 4:
				id := r.IntN(2)
				cl.revs[id], cl.markers[id] = nil, 0
				c.WatchFrom(id, "kv", ">", 0, timeout)
			case 5:
				reqs = append(reqs, c.RequestBytes("svc.x", []byte("q"), timeout))
			case 6:
				n.SetServerUp(!n.ServerUp())
			case 7:
				c.SetDeadLink(r.IntN(2) == 0)
			case 8:
				c.SetLink(r.IntN(4) != 0, r.IntN(4) == 0, r.IntN(4) == 0)
			default:
				b.Put(k.Now(), "k"+itoa(r.IntN(3)), []byte("x"), nil)
			}
		}
		n.SetServerUp(true)
		c.SetDeadLink(false)
		c.SetLink(true, false, false)
		k.Run(k.Now() + time.Minute)
		held := map[string]bool{}
		for _, key := range []string{"k0", "k1", "k2"} {
			h, _ := b.History(key)
			for _, e := range h {
				held[string(e.Value)] = true
			}
		}
		for _, tok := range toks {
			if cl.n[tok] != 1 {
				t.Fatalf("seed %d: call %d got %d results", seed, tok, cl.n[tok])
			}
			if w, ok := cl.writes[tok]; ok {
				switch {
				case w.err == nil:
					outcomes["acknowledged"]++
				case errors.Is(w.err, ErrTimeout) && held[values[tok]]:
					outcomes["timed out, landed"]++
				case errors.Is(w.err, ErrTimeout):
					outcomes["timed out, lost"]++
				case errors.Is(w.err, ErrBufferFull):
					outcomes["buffer full"]++
				}
			}
		}
		for _, tok := range reqs {
			if cl.n[tok|1<<62] != 1 {
				t.Fatalf("seed %d: request %d got %d replies", seed, tok, cl.n[tok|1<<62])
			}
		}
		for id, revs := range cl.revs {
			for i := 1; i < len(revs); i++ {
				if revs[i] <= revs[i-1] {
					t.Fatalf("seed %d: watch %d delivered %v", seed, id, revs)
				}
			}
			if cl.markers[id] > 1 {
				t.Fatalf("seed %d: watch %d: %d end-of-replay markers", seed, id, cl.markers[id])
			}
		}
	}
	for _, o := range []string{"acknowledged", "timed out, landed", "timed out, lost", "buffer full"} {
		if outcomes[o] == 0 {
			t.Errorf("no write %s in 30 seeds: the chaos does not reach it (%v)", o, outcomes)
		}
	}
	t.Logf("write outcomes: %v", outcomes)
}

// w2key finds the key holding revision rev.
func w2key(b *Bucket, rev uint64) string {
	for _, k := range []string{"k0", "k1", "k2"} {
		h, _ := b.History(k)
		for _, e := range h {
			if e.Rev == rev {
				return k
			}
		}
	}
	return "none"
}
