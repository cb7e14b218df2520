package shell

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/agent/executor"
	"github.com/flotilla-fleet/flotilla/agent/link"
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

// natsSide carries out the link's NATS actions: one connection, KV handles,
// the watches' goroutines and the command subscription.
type natsSide struct {
	s   *Shell
	nc  *nats.Conn
	js  jetstream.JetStream
	sub *nats.Subscription

	mu  sync.Mutex
	kvs map[string]jetstream.KeyValue

	watches [2]struct { // touched by the event loop only
		gen    uint32
		cancel context.CancelFunc
	}
}

func (n *natsSide) connect() error {
	s := n.s
	o := s.o.NATS
	if o.Name == "" {
		o.Name = "flotilla-agent " + s.o.Device
	}
	nc, err := dialNATS(o, s)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	n.nc = nc
	if n.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if ex := s.o.Executor; ex != nil {
		if ms, ok := ex.Source.(executor.MultiSource); ok && ms.Objects == nil {
			js := n.js
			ms.Objects = executor.ObjectStoreSource{JS: func() jetstream.JetStream { return js }}
			ex.Source = ms
		}
	}
	if s.o.Connected != nil {
		s.o.Connected(nc)
	}
	subj := core.CommandSubscription(s.o.Device)
	if n.sub, err = nc.Subscribe(subj, func(m *nats.Msg) { s.push(link.Command(m.Subject, m.Data, m)) }); err != nil {
		return fmt.Errorf("subscribe %s: %w", subj, err)
	}
	if nc.Status() == nats.CONNECTED {
		go s.push(link.Conn(true)) // the link ignores a repeat from the handler
	}
	return nil
}

func dialNATS(o NATSOptions, s *Shell) (*nats.Conn, error) {
	max := o.MaxDelay
	if max <= 0 {
		max = 10 * time.Second
	}
	r := newRand()
	var rmu sync.Mutex
	var failures atomic.Int64
	log := s.log.With("part", "nats")
	up := func(c *nats.Conn) {
		failures.Store(0)
		log.Info("nats connected", "url", c.ConnectedUrl())
		s.push(link.Conn(true))
	}
	opts := []nats.Option{
		nats.Name(o.Name), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(func(n int) time.Duration {
			rmu.Lock()
			defer rmu.Unlock()
			return ReconnectDelay(n, max, r)
		}),
		nats.PingInterval(10 * time.Second), nats.MaxPingsOutstanding(3), nats.ReconnectBufSize(1 << 20),
		nats.ConnectHandler(up), nats.ReconnectHandler(up),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "err", err)
			s.push(link.Conn(false))
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			// Every attempt fails the same way while the server is away:
			// log the first and then every 20th.
			if n := failures.Add(1); n == 1 || n%20 == 0 {
				log.Warn("nats unreachable; retrying with backoff", "attempts", n, "err", err)
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

// bucket returns a KV handle (link.ErrBucketNotFound when it is missing).
func (n *natsSide) bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	n.mu.Lock()
	kv := n.kvs[name]
	n.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := n.js.KeyValue(ctx, name)
	if err != nil {
		return nil, kvErr(name, err)
	}
	n.keep(name, kv)
	return kv, nil
}

func (n *natsSide) keep(name string, kv jetstream.KeyValue) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.kvs == nil {
		n.kvs = map[string]jetstream.KeyValue{}
	}
	n.kvs[name] = kv
}

func kvErr(bucket string, err error) error {
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("bucket %s: %w (%w)", bucket, link.ErrBucketNotFound, err)
	}
	return fmt.Errorf("bucket %s: %w", bucket, err)
}

// errNotConnected fails a write at once while the client is reconnecting:
// nats.go would buffer it and land it late, after newer values the link
// holds (the link writes the newest value again after the reconnect).
var errNotConnected = errors.New("nats: not connected")

func (n *natsSide) write(token uint64, bucket, key string, value []byte, del bool, timeout time.Duration) {
	if n.nc.Status() != nats.CONNECTED {
		go n.s.push(link.WriteDone(token, errNotConnected))
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(n.s.io, timeout)
		defer cancel()
		kv, err := n.bucket(ctx, bucket)
		if err == nil && del {
			err = kv.Delete(ctx, key)
		} else if err == nil {
			_, err = kv.Put(ctx, key, value)
		}
		n.s.push(link.WriteDone(token, err))
	}()
}

func (n *natsSide) createBucket(bucket string, timeout time.Duration) {
	go func() {
		ctx, cancel := context.WithTimeout(n.s.io, timeout)
		defer cancel()
		kv, err := n.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = n.js.KeyValue(ctx, bucket)
		}
		if err == nil {
			n.keep(bucket, kv)
		}
		n.s.push(link.BucketCreated(bucket, err))
	}()
}
