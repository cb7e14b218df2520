package natsim

import (
	"errors"
	"testing"
	"time"
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
