package natsim_test

// The fidelity suite: the same contract specs run against the simulated NATS
// and an embedded nats-server (JetStream KV through nats.go/jetstream), so
// the simulator cannot drift from the semantics the cores rely on.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/flotilla-fleet/flotilla/sim/kernel"
	"github.com/flotilla-fleet/flotilla/sim/natsim"
)

func TestNatsim(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "natsim fidelity")
}

// rec is one KV entry as the contract sees it.
type rec struct {
	Key   string
	Rev   uint64
	Op    string // PUT, DEL, PURGE
	Value string
}

var errNotFound = errors.New("key not found")

// backend is what the contract specs need from a NATS implementation.
type backend interface {
	CreateBucket(name string, history int)
	Put(bucket, key, value string) uint64
	Delete(bucket, key string)
	Purge(bucket, key string)
	Get(bucket, key string) (rec, error)
	History(bucket, key string) ([]rec, error)
	// Watch collects the initial replay (up to the end-of-initial marker),
	// then runs then() and collects live entries until want of them arrived
	// (or a short wait passed).
	Watch(bucket, filter string, mode natsim.WatchMode, from uint64, then func(), want int) (initial, live []rec)
	// Serve answers requests on subject with reply.
	Serve(subject, reply string)
	Request(subject, data string) (string, error)
}

// ---- sim backend -------------------------------------------------------------

type zeroPolicy struct{}

func (zeroPolicy) Fate(*natsim.Conn, natsim.Dir, bool) natsim.Fate {
	return natsim.Fate{Delay: time.Millisecond}
}

type simBackend struct {
	k   *kernel.Kernel
	s   *natsim.Server
	n   *natsim.Net
	c   *natsim.Conn
	cl  *simClient
	wid int
	tok uint64
}

// simClient drives a connection with the v2 calls, as a shell does.
type simClient struct {
	watch   map[int][]*natsim.Entry
	initEnd map[int]bool
	replies map[uint64]string
	errs    map[uint64]error  // requests
	writes  map[uint64]uint64 // token → revision
	gets    map[uint64]*natsim.Entry
	kvErrs  map[uint64]error // writes and gets
	respond map[int]string
}

func (c *simClient) WatchEntry(_ *natsim.Conn, id int, e *natsim.Entry) {
	if e == nil {
		c.initEnd[id] = true
		return
	}
	c.watch[id] = append(c.watch[id], e)
}
func (c *simClient) Message(conn *natsim.Conn, id int, m *natsim.Msg) {
	Expect(conn.Respond(m, []byte(c.respond[id]))).To(Succeed())
}
func (c *simClient) Reply(_ *natsim.Conn, tok uint64, m *natsim.Msg, err error) {
	if err != nil {
		c.errs[tok] = err
		return
	}
	c.replies[tok] = string(m.Data)
}
func (c *simClient) WriteDone(_ *natsim.Conn, tok, rev uint64, err error) {
	if err != nil {
		c.kvErrs[tok] = err
		return
	}
	c.writes[tok] = rev
}
func (c *simClient) GetDone(_ *natsim.Conn, tok uint64, e *natsim.Entry, err error) {
	if err != nil {
		c.kvErrs[tok] = err
		return
	}
	c.gets[tok] = e
}
func (c *simClient) WatchFailed(_ *natsim.Conn, id int, err error) {
	Fail(fmt.Sprintf("watch %d failed: %v", id, err))
}
func (c *simClient) ConnState(*natsim.Conn, bool) {}

func newSimClient() *simClient {
	return &simClient{watch: map[int][]*natsim.Entry{}, initEnd: map[int]bool{}, replies: map[uint64]string{},
		errs: map[uint64]error{}, writes: map[uint64]uint64{}, gets: map[uint64]*natsim.Entry{}, kvErrs: map[uint64]error{}, respond: map[int]string{}}
}

func newSimBackend() *simBackend {
	k := kernel.New(1)
	s := natsim.NewServer()
	n := natsim.NewNet(k, s, zeroPolicy{})
	cl := newSimClient()
	return &simBackend{k: k, s: s, n: n, cl: cl, c: n.Dial(cl, natsim.ConnOptions{})}
}

func (b *simBackend) settle() { b.k.Run(b.k.Now() + time.Second) }

func (b *simBackend) CreateBucket(name string, history int) {
	_, err := b.s.CreateBucket(name, history)
	Expect(err).NotTo(HaveOccurred())
}

// write is kv.Put / Delete / Purge through the connection; it returns the
// revision the client was told.
func (b *simBackend) write(op natsim.Op, bucket, key, value string) uint64 {
	b.tok++
	tok := b.tok
	e := &natsim.Entry{Bucket: bucket, Key: key, Op: op}
	if op == natsim.OpPut {
		e.Value = []byte(value)
	}
	b.c.Write(tok, e, time.Second)
	b.settle()
	Expect(b.cl.kvErrs[tok]).NotTo(HaveOccurred())
	rev, ok := b.cl.writes[tok]
	Expect(ok).To(BeTrue(), "no result for write %d", tok)
	return rev
}

func (b *simBackend) Put(bucket, key, value string) uint64 {
	return b.write(natsim.OpPut, bucket, key, value)
}
func (b *simBackend) Delete(bucket, key string) { b.write(natsim.OpDelete, bucket, key, "") }
func (b *simBackend) Purge(bucket, key string)  { b.write(natsim.OpPurge, bucket, key, "") }

func toRec(e *natsim.Entry) rec {
	return rec{Key: e.Key, Rev: e.Rev, Op: e.Op.String(), Value: string(e.Value)}
}

func (b *simBackend) Get(bucket, key string) (rec, error) {
	b.tok++
	tok := b.tok
	b.c.Get(tok, bucket, key, time.Second)
	b.settle()
	if err := b.cl.kvErrs[tok]; err != nil {
		if errors.Is(err, natsim.ErrKeyNotFound) {
			return rec{}, errNotFound
		}
		return rec{}, err
	}
	e, ok := b.cl.gets[tok]
	Expect(ok).To(BeTrue(), "no result for get %d", tok)
	return toRec(e), nil
}

// History has no client call in natsim (no shell reads history): it asks
// the server.
func (b *simBackend) History(bucket, key string) ([]rec, error) {
	bk, _ := b.s.Bucket(bucket)
	h, err := bk.History(key)
	if errors.Is(err, natsim.ErrKeyNotFound) {
		return nil, errNotFound
	}
	var out []rec
	for _, e := range h {
		out = append(out, toRec(e))
	}
	return out, err
}

// serverWatch collects a watch made at the server (Bucket.Watch) for the
// modes no shell asks a connection for (WatchAll, WatchUpdates).
type serverWatch struct{ got []*natsim.Entry }

func (s *serverWatch) WatchEntry(_ *natsim.Watcher, e *natsim.Entry) { s.got = append(s.got, e) }

func (b *simBackend) Watch(bucket, filter string, mode natsim.WatchMode, from uint64, then func(), want int) (initial, live []rec) {
	if mode == natsim.WatchAll || mode == natsim.WatchUpdates {
		bk, err := b.s.Bucket(bucket)
		Expect(err).NotTo(HaveOccurred())
		sink := &serverWatch{}
		w, init := bk.Watch(filter, mode, from, sink)
		defer w.Stop()
		for _, e := range init {
			initial = append(initial, toRec(e))
		}
		then()
		b.settle()
		for _, e := range sink.got {
			live = append(live, toRec(e))
		}
		return initial, live
	}
	Expect(mode == natsim.WatchFrom).To(Equal(from > 0), "kv.Watch resumes from a revision exactly when one is given")
	b.wid++
	id := b.wid
	b.c.WatchFrom(id, bucket, filter, from, time.Second)
	defer b.c.StopWatch(id)
	b.settle()
	Expect(b.cl.initEnd[id]).To(BeTrue(), "end-of-initial marker")
	for _, e := range b.cl.watch[id] {
		initial = append(initial, toRec(e))
	}
	n := len(b.cl.watch[id])
	then()
	b.settle()
	for _, e := range b.cl.watch[id][n:] {
		live = append(live, toRec(e))
	}
	return initial, live
}

func (b *simBackend) Serve(subject, reply string) {
	cl := newSimClient()
	c := b.n.Dial(cl, natsim.ConnOptions{})
	cl.respond[1] = reply
	c.Subscribe(1, subject)
	b.settle()
}

func (b *simBackend) Request(subject, data string) (string, error) {
	tok := b.c.RequestBytes(subject, []byte(data), time.Second)
	b.k.Run(b.k.Now() + 2*time.Second)
	if err := b.cl.errs[tok]; err != nil {
		return "", err
	}
	r, ok := b.cl.replies[tok]
	if !ok {
		return "", fmt.Errorf("no reply and no error for request %d", tok)
	}
	return r, nil
}

// ---- real backend ------------------------------------------------------------

type realBackend struct {
	ctx context.Context
	nc  *nats.Conn
	js  jetstream.JetStream
	kvs map[string]jetstream.KeyValue
}

func newRealBackend() *realBackend {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: GinkgoT().TempDir(),
		NoLog: true, NoSigs: true}
	s, err := server.NewServer(opts)
	Expect(err).NotTo(HaveOccurred())
	go s.Start()
	DeferCleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	Expect(s.ReadyForConnections(10 * time.Second)).To(BeTrue())
	nc, err := nats.Connect(s.ClientURL())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	js, err := jetstream.New(nc)
	Expect(err).NotTo(HaveOccurred())
	return &realBackend{ctx: context.Background(), nc: nc, js: js, kvs: map[string]jetstream.KeyValue{}}
}

func (b *realBackend) CreateBucket(name string, history int) {
	kv, err := b.js.CreateKeyValue(b.ctx, jetstream.KeyValueConfig{Bucket: name, History: uint8(history)})
	Expect(err).NotTo(HaveOccurred())
	b.kvs[name] = kv
}

func (b *realBackend) Put(bucket, key, value string) uint64 {
	r, err := b.kvs[bucket].Put(b.ctx, key, []byte(value))
	Expect(err).NotTo(HaveOccurred())
	return r
}
func (b *realBackend) Delete(bucket, key string) {
	Expect(b.kvs[bucket].Delete(b.ctx, key)).To(Succeed())
}
func (b *realBackend) Purge(bucket, key string) {
	Expect(b.kvs[bucket].Purge(b.ctx, key)).To(Succeed())
}

func opName(op jetstream.KeyValueOp) string {
	switch op {
	case jetstream.KeyValueDelete:
		return "DEL"
	case jetstream.KeyValuePurge:
		return "PURGE"
	}
	return "PUT"
}

func realRec(e jetstream.KeyValueEntry) rec {
	return rec{Key: e.Key(), Rev: e.Revision(), Op: opName(e.Operation()), Value: string(e.Value())}
}

func (b *realBackend) Get(bucket, key string) (rec, error) {
	e, err := b.kvs[bucket].Get(b.ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec{}, errNotFound
	}
	if err != nil {
		return rec{}, err
	}
	return realRec(e), nil
}

func (b *realBackend) History(bucket, key string) ([]rec, error) {
	h, err := b.kvs[bucket].History(b.ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, errNotFound
	}
	var out []rec
	for _, e := range h {
		out = append(out, realRec(e))
	}
	return out, err
}

func (b *realBackend) Watch(bucket, filter string, mode natsim.WatchMode, from uint64, then func(), want int) (initial, live []rec) {
	var opts []jetstream.WatchOpt
	switch mode {
	case natsim.WatchAll:
		opts = append(opts, jetstream.IncludeHistory())
	case natsim.WatchFrom:
		opts = append(opts, jetstream.ResumeFromRevision(from))
	case natsim.WatchUpdates:
		opts = append(opts, jetstream.UpdatesOnly())
	}
	w, err := b.kvs[bucket].Watch(b.ctx, filter, opts...)
	Expect(err).NotTo(HaveOccurred())
	defer w.Stop()
	timeout := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case e := <-w.Updates():
			if e == nil {
				done = true
				break
			}
			initial = append(initial, realRec(e))
		case <-timeout:
			Fail("no end-of-initial marker from the real watch")
		}
	}
	then()
	wait := time.After(2 * time.Second)
	for len(live) < want {
		select {
		case e := <-w.Updates():
			if e != nil {
				live = append(live, realRec(e))
			}
		case <-wait:
			return initial, live
		}
	}
	// Give an unexpected extra entry a moment to show up.
	select {
	case e := <-w.Updates():
		if e != nil {
			live = append(live, realRec(e))
		}
	case <-time.After(50 * time.Millisecond):
	}
	return initial, live
}

func (b *realBackend) Serve(subject, reply string) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) { m.Respond([]byte(reply)) })
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(sub.Unsubscribe)
	Expect(b.nc.Flush()).To(Succeed())
}

func (b *realBackend) Request(subject, data string) (string, error) {
	m, err := b.nc.Request(subject, []byte(data), time.Second)
	if errors.Is(err, nats.ErrNoResponders) {
		return "", natsim.ErrNoResponders
	}
	if err != nil {
		return "", err
	}
	return string(m.Data), nil
}

// ---- the contract ---------------------------------------------------------------

func contract(name string, mk func() backend) {
	Describe(name, func() {
		var b backend
		BeforeEach(func() {
			b = mk()
			b.CreateBucket("kv", 5)
			b.CreateBucket("one", 1)
		})

		It("assigns increasing per-bucket revisions and Get returns the latest", func() {
			r1 := b.Put("kv", "a", "1")
			r2 := b.Put("kv", "b", "2")
			r3 := b.Put("kv", "a", "3")
			Expect([]uint64{r1, r2, r3}).To(Equal([]uint64{1, 2, 3}))
			e, err := b.Get("kv", "a")
			Expect(err).NotTo(HaveOccurred())
			Expect(e).To(Equal(rec{Key: "a", Rev: 3, Op: "PUT", Value: "3"}))
			_, err = b.Get("kv", "missing")
			Expect(err).To(MatchError(errNotFound))
		})

		It("keeps history up to the bucket's limit, with delete markers", func() {
			b.Put("kv", "a", "1")
			b.Put("kv", "a", "2")
			b.Delete("kv", "a")
			h, err := b.History("kv", "a")
			Expect(err).NotTo(HaveOccurred())
			Expect(h).To(Equal([]rec{{"a", 1, "PUT", "1"}, {"a", 2, "PUT", "2"}, {"a", 3, "DEL", ""}}))
			_, err = b.Get("kv", "a")
			Expect(err).To(MatchError(errNotFound), "a deleted key reads as not found")
			for i := 0; i < 7; i++ {
				b.Put("one", "x", fmt.Sprint(i))
			}
			h, err = b.History("one", "x")
			Expect(err).NotTo(HaveOccurred())
			Expect(h).To(Equal([]rec{{"x", 7, "PUT", "6"}}))
		})

		It("purge leaves only the purge marker", func() {
			b.Put("kv", "a", "1")
			b.Put("kv", "a", "2")
			b.Purge("kv", "a")
			h, err := b.History("kv", "a")
			Expect(err).NotTo(HaveOccurred())
			Expect(h).To(Equal([]rec{{"a", 3, "PURGE", ""}}))
			_, err = b.Get("kv", "a")
			Expect(err).To(MatchError(errNotFound))
		})

		It("watch replays the latest entry per key, markers included, then live updates", func() {
			b.Put("kv", "d1.web", "1")
			b.Put("kv", "d1.web", "2")
			b.Put("kv", "d1.db", "x")
			b.Put("kv", "d2.web", "y")
			b.Delete("kv", "d1.db")
			initial, live := b.Watch("kv", "d1.*", natsim.WatchLast, 0, func() {
				b.Put("kv", "d2.web", "z") // not matching
				b.Put("kv", "d1.web", "3")
				b.Purge("kv", "d1.db")
			}, 2)
			Expect(initial).To(Equal([]rec{{"d1.web", 2, "PUT", "2"}, {"d1.db", 5, "DEL", ""}}))
			Expect(live).To(Equal([]rec{{"d1.web", 7, "PUT", "3"}, {"d1.db", 8, "PURGE", ""}}))
		})

		It("watch with history replays every retained revision in order", func() {
			b.Put("kv", "a", "1")
			b.Put("kv", "b", "1")
			b.Put("kv", "a", "2")
			initial, _ := b.Watch("kv", ">", natsim.WatchAll, 0, func() {}, 0)
			Expect(initial).To(Equal([]rec{{"a", 1, "PUT", "1"}, {"b", 2, "PUT", "1"}, {"a", 3, "PUT", "2"}}))
		})

		It("watch resumes from a revision after a reconnect", func() {
			for i := 1; i <= 4; i++ {
				b.Put("kv", "a", fmt.Sprint(i))
			}
			initial, live := b.Watch("kv", "a", natsim.WatchFrom, 3, func() { b.Put("kv", "a", "5") }, 1)
			Expect(initial).To(Equal([]rec{{"a", 3, "PUT", "3"}, {"a", 4, "PUT", "4"}}))
			Expect(live).To(Equal([]rec{{"a", 5, "PUT", "5"}}))
		})

		It("watch resume skips revisions the history no longer holds", func() {
			for i := 1; i <= 4; i++ {
				b.Put("one", "a", fmt.Sprint(i))
			}
			initial, _ := b.Watch("one", "a", natsim.WatchFrom, 2, func() {}, 0)
			Expect(initial).To(Equal([]rec{{"a", 4, "PUT", "4"}}))
		})

		It("request/reply answers when someone listens and says no responders otherwise", func() {
			_, err := b.Request("device-commands.d1.ping", "hi")
			Expect(err).To(MatchError(natsim.ErrNoResponders))
			b.Serve("device-commands.d1.>", "pong")
			r, err := b.Request("device-commands.d1.ping", "hi")
			Expect(err).NotTo(HaveOccurred())
			Expect(r).To(Equal("pong"))
		})
	})
}

var _ = Describe("the NATS contract the cores rely on", func() {
	contract("simulated NATS", func() backend { return newSimBackend() })
	contract("embedded nats-server", func() backend { return newRealBackend() })
})
