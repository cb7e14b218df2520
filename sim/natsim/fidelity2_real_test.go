//go:build integration

package natsim_test

// The real side of the v2 specs: a nats-server that the spec stops and
// restarts (natstest.StartRestartable), clients connected through a TCP
// proxy it can black-hole (natstest.Proxy), driven with nats.go + jetstream
// exactly as a shell does: context deadlines, kv.Put, kv.Get, kv.Watch,
// nc.Request, nc.Publish, msg.Respond.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/flotilla-fleet/flotilla/internal/natstest"
	"github.com/flotilla-fleet/flotilla/sim/natsim"
)

type realNet struct {
	srv   *natstest.Server
	proxy *natstest.Proxy
	start time.Time
}

func newRealNet() shellNet {
	t := GinkgoT()
	srv := natstest.StartRestartable(t)
	b := &realNet{srv: srv, proxy: natstest.NewProxy(t, srv.URL()), start: time.Now()}
	nc, err := nats.Connect(srv.URL())
	Expect(err).NotTo(HaveOccurred())
	defer nc.Close()
	js, err := jetstream.New(nc)
	Expect(err).NotTo(HaveOccurred())
	_, err = js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "kv", History: 5})
	Expect(err).NotTo(HaveOccurred())
	return b
}

func (b *realNet) Now() time.Duration    { return time.Since(b.start) }
func (b *realNet) Sleep(d time.Duration) { time.Sleep(d) }
func (b *realNet) StopServer()           { b.srv.Stop() }
func (b *realNet) StartServer()          { Expect(b.srv.Start()).To(Succeed()) }
func (b *realNet) Blackhole(in, out bool) {
	b.proxy.Blackhole(in, out)
}

// direct runs f with a fresh connection straight to the server.
func (b *realNet) direct(f func(kv jetstream.KeyValue)) {
	nc, err := nats.Connect(b.srv.URL())
	Expect(err).NotTo(HaveOccurred())
	defer nc.Close()
	js, err := jetstream.New(nc)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "kv")
	Expect(err).NotTo(HaveOccurred())
	f(kv)
}

func (b *realNet) Read(key string) (val string, err error) {
	b.direct(func(kv jetstream.KeyValue) {
		var e jetstream.KeyValueEntry
		e, err = kv.Get(context.Background(), key)
		if err == nil {
			val = string(e.Value())
		}
	})
	return val, mapRealErr(err)
}

func (b *realNet) Store(key, value string) {
	b.direct(func(kv jetstream.KeyValue) {
		_, err := kv.Put(context.Background(), key, []byte(value))
		Expect(err).NotTo(HaveOccurred())
	})
}

func (b *realNet) Dial(o natsim.ConnOptions) shellClient {
	c := &realShell{net: b, watchers: map[int]*realWatch{}}
	opts := []nats.Option{nats.Name(o.Name), nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { c.state(false) }),
		nats.ReconnectHandler(func(*nats.Conn) { c.state(true) })}
	if o.PingInterval > 0 {
		opts = append(opts, nats.PingInterval(o.PingInterval))
	}
	if o.MaxPingsOut > 0 {
		opts = append(opts, nats.MaxPingsOutstanding(o.MaxPingsOut))
	}
	if o.ReconnectWait > 0 {
		opts = append(opts, nats.ReconnectWait(o.ReconnectWait))
	}
	if o.ReconnectBuf != 0 {
		opts = append(opts, nats.ReconnectBufSize(o.ReconnectBuf))
	}
	nc, err := nats.Connect(b.proxy.URL(), opts...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	js, err := jetstream.New(nc)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.kv, err = js.KeyValue(ctx, "kv")
	Expect(err).NotTo(HaveOccurred())
	c.nc = nc
	return c
}

type realShell struct {
	net *realNet
	nc  *nats.Conn
	kv  jetstream.KeyValue

	mu       sync.Mutex
	states   []stateChange
	msgs     []string
	held     []*nats.Msg
	watchers map[int]*realWatch
}

type realWatch struct {
	w    jetstream.KeyWatcher
	seen []rec
}

func (c *realShell) state(up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.states = append(c.states, stateChange{up: up, at: c.net.Now()})
}

func (c *realShell) async(run func(ctx context.Context) (string, uint64, error), timeout time.Duration) *fut {
	f := &fut{t0: c.net.Now()}
	go func() {
		defer GinkgoRecover()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		val, rev, err := run(ctx)
		f.set(c.net.Now(), val, rev, mapRealErr(err))
	}()
	return f
}

func (c *realShell) Put(key, value string, timeout time.Duration) *fut {
	return c.async(func(ctx context.Context) (string, uint64, error) {
		rev, err := c.kv.Put(ctx, key, []byte(value))
		return "", rev, err
	}, timeout)
}

func (c *realShell) Get(key string, timeout time.Duration) *fut {
	return c.async(func(ctx context.Context) (string, uint64, error) {
		e, err := c.kv.Get(ctx, key)
		if err != nil {
			return "", 0, err
		}
		return string(e.Value()), e.Revision(), nil
	}, timeout)
}

// Watch creates the watch as a shell must: kv.Watch unsubscribes the watcher
// when its context ends (nats.go js.go: `<-ctx.Done(); sub.Unsubscribe()`),
// so the creation is bounded by a timer that cancels the context only while
// kv.Watch has not returned, never by a context deadline.
func (c *realShell) Watch(id int, from uint64, timeout time.Duration) *fut {
	f := &fut{t0: c.net.Now()}
	go func() {
		defer GinkgoRecover()
		val, rev, err := c.watch(id, from, timeout)
		f.set(c.net.Now(), val, rev, mapRealErr(err))
	}()
	return f
}

func (c *realShell) watch(id int, from uint64, timeout time.Duration) (string, uint64, error) {
	{
		var opts []jetstream.WatchOpt
		if from > 0 {
			opts = append(opts, jetstream.ResumeFromRevision(from))
		}
		ctx, cancel := context.WithCancel(context.Background())
		DeferCleanup(cancel)
		timer := time.AfterFunc(timeout, cancel)
		w, err := c.kv.Watch(ctx, ">", opts...)
		if !timer.Stop() {
			if err == nil {
				_ = w.Stop()
			}
			return "", 0, context.DeadlineExceeded
		}
		if err != nil {
			return "", 0, err
		}
		rw := &realWatch{w: w}
		c.mu.Lock()
		c.watchers[id] = rw
		c.mu.Unlock()
		go func() {
			for e := range w.Updates() {
				if e == nil {
					continue
				}
				c.mu.Lock()
				rw.seen = append(rw.seen, realRec(e))
				c.mu.Unlock()
			}
		}()
		return "", 0, nil
	}
}

func (c *realShell) StopWatch(id int) {
	c.mu.Lock()
	rw := c.watchers[id]
	delete(c.watchers, id)
	c.mu.Unlock()
	if rw != nil {
		// After a restart Stop reports that the consumer is gone; a shell
		// ignores that.
		_ = rw.w.Stop()
	}
}

func (c *realShell) Seen(id int) []rec {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rw := c.watchers[id]; rw != nil {
		return append([]rec(nil), rw.seen...)
	}
	return nil
}

func (c *realShell) Request(subject, data string, timeout time.Duration) *fut {
	f := &fut{t0: c.net.Now()}
	go func() {
		defer GinkgoRecover()
		m, err := c.nc.Request(subject, []byte(data), timeout)
		var val string
		if m != nil {
			val = string(m.Data)
		}
		f.set(c.net.Now(), val, 0, mapRealErr(err))
	}()
	return f
}

func (c *realShell) Subscribe(subject string) {
	_, err := c.nc.Subscribe(subject, func(m *nats.Msg) {
		c.mu.Lock()
		c.msgs = append(c.msgs, string(m.Data))
		c.mu.Unlock()
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(c.nc.Flush()).To(Succeed())
}

func (c *realShell) Messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs...)
}

func (c *realShell) Publish(subject, data string) error {
	return mapRealErr(c.nc.Publish(subject, []byte(data)))
}

func (c *realShell) ServeHeld(subject string) {
	_, err := c.nc.Subscribe(subject, func(m *nats.Msg) {
		c.mu.Lock()
		c.held = append(c.held, m)
		c.mu.Unlock()
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(c.nc.Flush()).To(Succeed())
}

func (c *realShell) RespondHeld(data string) error {
	c.mu.Lock()
	held := c.held
	c.held = nil
	c.mu.Unlock()
	for _, m := range held {
		if err := m.Respond([]byte(data)); err != nil {
			return mapRealErr(err)
		}
	}
	return nil
}

func (c *realShell) States() []stateChange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]stateChange(nil), c.states...)
}

// mapRealErr names nats.go's errors as natsim does.
func mapRealErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return natsim.ErrTimeout
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return natsim.ErrNoResponders
	case errors.Is(err, nats.ErrMaxPayload):
		return natsim.ErrMaxPayload
	case errors.Is(err, nats.ErrReconnectBufExceeded):
		return natsim.ErrBufferFull
	case errors.Is(err, nats.ErrConnectionClosed):
		return natsim.ErrConnClosed
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return natsim.ErrKeyNotFound
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return natsim.ErrBucketNotFound
	}
	return err
}

var _ = Describe("what a shell sees of NATS (natsim v2)", func() {
	shellContract("embedded nats-server", newRealNet)
})
