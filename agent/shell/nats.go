package shell

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
)

// NATSOptions says how to reach NATS.
type NATSOptions struct {
	URL      string
	Creds    string // .creds file
	CA       string // PEM CA bundle
	Cert     string // client certificate (mutual TLS)
	Key      string
	Dialer   nats.CustomDialer // e.g. the virtio-serial dialer inside VMs
	Name     string            // connection name shown by the server
	MaxDelay time.Duration     // reconnect backoff cap; default 10s
}

// ReconnectDelay is the backoff before reconnect attempt n (1-based): 250ms
// doubling up to max, with full jitter, so that a fleet that lost its server
// does not come back in lock-step.
func ReconnectDelay(n int, max time.Duration, r *rand.Rand) time.Duration {
	d := 250 * time.Millisecond
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + time.Duration(r.Int64N(int64(d/2)+1))
}

func newRand() *rand.Rand {
	return rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15))
}

// link is the agent's side of NATS: one connection, the buckets, two KV
// watches, the command subscription and an outbox of KV writes.
type link struct {
	device string
	log    *slog.Logger
	push   func(agentcore.Input) // to the event loop
	onCmd  func(*nats.Msg)       // raw command messages

	nc *nats.Conn

	mu   sync.Mutex
	js   jetstream.JetStream
	kvs  map[string]jetstream.KeyValue
	kick chan struct{} // closed (and replaced) on every (re)connect

	// Desired-state bookkeeping for the shell's orphan collection.
	replayed chan struct{} // closed after the first desired-state replay
	once     sync.Once
	liveMu   sync.Mutex
	live     map[string]bool // deployments with a desired-state value

	out *outbox
}

func dialNATS(o NATSOptions, l *link) (*nats.Conn, error) {
	max := o.MaxDelay
	if max <= 0 {
		max = 10 * time.Second
	}
	r := newRand()
	var rmu sync.Mutex
	var failures atomic.Int64
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(func(n int) time.Duration {
			rmu.Lock()
			defer rmu.Unlock()
			return ReconnectDelay(n, max, r)
		}),
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.ReconnectBufSize(1 << 20),
		nats.ConnectHandler(func(*nats.Conn) { failures.Store(0); l.log.Info("nats connected"); l.kickWatches() }),
		nats.ReconnectHandler(func(c *nats.Conn) {
			failures.Store(0)
			l.log.Info("nats reconnected", "url", c.ConnectedUrl())
			l.kickWatches()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { l.log.Warn("nats disconnected", "err", err) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			// Every attempt fails the same way while the server is away:
			// log the first and then every 20th.
			if n := failures.Add(1); n == 1 || n%20 == 0 {
				l.log.Warn("nats unreachable; retrying with backoff", "attempts", n, "err", err)
			}
		}),
	}
	if o.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	if o.CA != "" {
		opts = append(opts, nats.RootCAs(o.CA))
	}
	if o.Cert != "" {
		opts = append(opts, nats.ClientCert(o.Cert, o.Key))
	}
	if o.Dialer != nil {
		opts = append(opts, nats.SetCustomDialer(o.Dialer))
	}
	url := o.URL
	if url == "" {
		url = nats.DefaultURL
	}
	return nats.Connect(url, opts...)
}

// kickWatches wakes everything waiting on epoch(): the watches restart and
// the outbox retries at once.
func (l *link) kickWatches() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.kick)
	l.kick = make(chan struct{})
}

// epoch returns a channel closed at the next (re)connect.
func (l *link) epoch() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.kick
}

// bucket returns a KV handle, creating the bucket when it does not exist.
func (l *link) bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	l.mu.Lock()
	kv := l.kvs[name]
	js := l.js
	l.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, History: 1})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	l.mu.Lock()
	l.kvs[name] = kv
	l.mu.Unlock()
	return kv, nil
}

// watchSpec is one long-lived KV watch.
type watchSpec struct {
	bucket string
	filter string
	handle func(jetstream.KeyValueEntry)
	onInit func() // after the first replay of each (re)start
}

// runWatch keeps a watch alive: after a reconnect, a closed watcher or an
// error it restarts from the last revision seen + 1, so nothing is missed
// and nothing is delivered twice.
func (l *link) runWatch(ctx context.Context, w watchSpec) {
	var lastRev uint64
	delay := 250 * time.Millisecond
	for ctx.Err() == nil {
		err := l.watchOnce(ctx, w, &lastRev)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.log.Warn("kv watch", "bucket", w.bucket, "filter", w.filter, "err", err, "retry_in", delay)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
		if err == nil {
			delay = 250 * time.Millisecond
		}
	}
}

func (l *link) watchOnce(ctx context.Context, w watchSpec, lastRev *uint64) error {
	kick := l.epoch()
	if l.nc.Status() != nats.CONNECTED {
		select {
		case <-ctx.Done():
		case <-kick:
		case <-time.After(time.Second):
		}
		return nil
	}
	kv, err := l.bucket(ctx, w.bucket)
	if err != nil {
		return err
	}
	var opts []jetstream.WatchOpt
	if *lastRev > 0 {
		// A bucket recreated since (its revisions restarted) is replayed whole.
		if st, err := kv.Status(ctx); err == nil {
			if si, ok := st.(*jetstream.KeyValueBucketStatus); ok && si.StreamInfo().State.LastSeq < *lastRev {
				l.log.Warn("kv bucket revisions went backwards; replaying it", "bucket", w.bucket)
				*lastRev = 0
			}
		}
	}
	if *lastRev > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(*lastRev+1))
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watcher, err := kv.Watch(wctx, w.filter, opts...)
	if err != nil {
		return fmt.Errorf("watch %s %s: %w", w.bucket, w.filter, err)
	}
	defer watcher.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
			return nil // reconnected: resume from lastRev
		case e, ok := <-watcher.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil {
				if w.onInit != nil {
					w.onInit()
				}
				continue
			}
			if e.Revision() <= *lastRev {
				continue
			}
			*lastRev = e.Revision()
			w.handle(e)
		}
	}
}

func (l *link) desiredEntry(e jetstream.KeyValueEntry) {
	dev, dep, err := core.ParseDesiredStateKey(e.Key())
	if err != nil || dev != l.device {
		l.log.Warn("ignoring desired-state key", "key", e.Key(), "err", err)
		return
	}
	switch e.Operation() {
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		l.setLive(dep, false)
		l.push(agentcore.DesiredDeleted{Deployment: dep, Revision: e.Revision()})
	default:
		l.setLive(dep, true)
		spec, err := core.DecodeWorkloadSpec(e.Value())
		if err == nil && spec.Deployment != dep {
			err = fmt.Errorf("spec names deployment %q but its key names %q", spec.Deployment, dep)
		}
		if err != nil {
			l.log.Warn("invalid desired state", "deployment", dep, "revision", e.Revision(), "err", err)
			l.push(agentcore.DesiredInvalid{Deployment: dep, Revision: e.Revision(), Err: core.Truncate(err.Error(), core.MaxErrorLen)})
			return
		}
		l.push(agentcore.DesiredPut{Deployment: dep, Spec: spec, Revision: e.Revision()})
	}
}

func (l *link) setLive(dep string, live bool) {
	l.liveMu.Lock()
	defer l.liveMu.Unlock()
	if live {
		l.live[dep] = true
	} else {
		delete(l.live, dep)
	}
}

// Live returns the deployments that have a desired-state value.
func (l *link) Live() map[string]bool {
	l.liveMu.Lock()
	defer l.liveMu.Unlock()
	out := make(map[string]bool, len(l.live))
	for k := range l.live {
		out[k] = true
	}
	return out
}

func (l *link) markerEntry(e jetstream.KeyValueEntry) {
	if e.Key() != core.AgentUpgradeKey(l.device) {
		return
	}
	switch e.Operation() {
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		l.push(agentcore.MarkerDeleted{})
	default:
		m, err := core.DecodeUpgradeMarker(e.Value())
		if err != nil {
			l.log.Warn("invalid upgrade marker", "revision", e.Revision(), "err", err)
			l.push(agentcore.MarkerInvalid{Err: core.Truncate(err.Error(), core.MaxErrorLen)})
			return
		}
		l.push(agentcore.MarkerPut{Marker: m})
	}
}

// ---- outbox ---------------------------------------------------------------

// outbox holds KV writes until they succeed. Writes to the same key replace
// each other (last value wins): an agent that was offline publishes its
// latest heartbeat, state and status, not the history it missed.
type outbox struct {
	l      *link
	mu     sync.Mutex
	seq    uint64
	items  map[string]*outItem // bucket + "\x00" + key
	wake   chan struct{}
	idle   chan struct{} // signalled when the outbox empties
	closed bool
}

type outItem struct {
	bucket, key string
	value       []byte
	del         bool
	seq         uint64
}

func newOutbox(l *link) *outbox {
	return &outbox{l: l, items: map[string]*outItem{}, wake: make(chan struct{}, 1), idle: make(chan struct{}, 1)}
}

func (o *outbox) put(bucket, key string, value []byte, del bool) {
	o.mu.Lock()
	o.seq++
	o.items[bucket+"\x00"+key] = &outItem{bucket: bucket, key: key, value: value, del: del, seq: o.seq}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items)
}

// oldest returns the item written least recently.
func (o *outbox) oldest() *outItem {
	o.mu.Lock()
	defer o.mu.Unlock()
	var best *outItem
	for _, it := range o.items {
		if best == nil || it.seq < best.seq {
			best = it
		}
	}
	return best
}

func (o *outbox) run(ctx context.Context) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		it := o.oldest()
		if it == nil {
			select {
			case o.idle <- struct{}{}:
			default:
			}
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
			}
			continue
		}
		err := o.write(ctx, it)
		if err == nil {
			o.mu.Lock()
			if cur := o.items[it.bucket+"\x00"+it.key]; cur != nil && cur.seq == it.seq {
				delete(o.items, it.bucket+"\x00"+it.key)
			}
			o.mu.Unlock()
			delay = 100 * time.Millisecond
			continue
		}
		if o.l.nc.Status() == nats.CONNECTED {
			o.l.log.Warn("kv write failed; retrying", "bucket", it.bucket, "key", it.key, "err", err, "retry_in", delay)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		case <-o.l.epoch():
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func (o *outbox) write(ctx context.Context, it *outItem) error {
	if o.l.nc.Status() != nats.CONNECTED {
		return errors.New("not connected")
	}
	kv, err := o.l.bucket(ctx, it.bucket)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if it.del {
		err = kv.Delete(wctx, it.key)
	} else {
		_, err = kv.Put(wctx, it.key, it.value)
	}
	return err
}

// flush waits until the outbox is empty or the deadline passes.
func (o *outbox) flush(ctx context.Context, d time.Duration) bool {
	if o.l.nc == nil {
		return false // never connected: nothing will drain it
	}
	deadline := time.After(d)
	for o.pending() > 0 {
		select {
		case <-o.idle:
		case <-deadline:
			return false
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}
