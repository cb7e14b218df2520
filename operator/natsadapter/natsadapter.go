// Package natsadapter is the operator's NATS side: it creates the KV
// buckets, replays and watches them from revision 0 as opcore inputs,
// carries out KV puts and deletes, and sends typed device commands.
//
// operator/runner uses Connect, OpenBucket and Classify; integration suites
// that drive real agents use Connect, then New, then Watch / Put / Delete /
// Command directly.
package natsadapter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/operator/runcore"
)

// DefaultCommandTimeout bounds a command when the caller sets none.
const DefaultCommandTimeout = 5 * time.Second

// Options configure an Adapter.
type Options struct {
	// CreateBuckets makes New create missing buckets (history 1, file
	// storage). The operator sets it; a read-only observer does not.
	CreateBuckets bool
	// Storage for created buckets; default file storage.
	Storage jetstream.StorageType
	// Replicas for created buckets; default 1.
	Replicas int
	Logger   *slog.Logger
}

// Adapter talks to one NATS server (or cluster) for the operator.
type Adapter struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	kv  map[string]jetstream.KeyValue
	log *slog.Logger
}

// Connect dials url with the operator's defaults plus opts, e.g.
// nats.UserCredentials(path): a name for monitoring, and reconnect forever,
// including when the first connect fails (RetryOnFailedConnect): a server
// that is down at start is waited for, so Connect fails only on invalid
// options or URLs. The returned connection may not be connected yet.
func Connect(url string, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{nats.Name("flotilla-operator"), nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second), nats.RetryOnFailedConnect(true)}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// New opens (and with CreateBuckets, creates) every bucket in core.Buckets.
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Adapter, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &Adapter{nc: nc, js: js, kv: map[string]jetstream.KeyValue{}, log: log}
	for _, b := range core.Buckets {
		kv, err := OpenBucket(ctx, js, b, opts.CreateBuckets, opts.Storage, opts.Replicas)
		if err != nil {
			return nil, err
		}
		a.kv[b] = kv
	}
	return a, nil
}

// OpenBucket opens a KV bucket; with create, it creates it if missing
// (history 1).
func OpenBucket(ctx context.Context, js jetstream.JetStream, bucket string, create bool, storage jetstream.StorageType, replicas int) (jetstream.KeyValue, error) {
	var (
		kv  jetstream.KeyValue
		err error
	)
	if create {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1,
			Storage: storage, Replicas: max(1, replicas)})
	} else {
		kv, err = js.KeyValue(ctx, bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// Classify maps a nats.go error onto the outcome the runner state machine
// routes on: a deadline or a dropped link is Uncertain (a write may have
// landed), no responders or a closed connection is Failed (it did not), an
// oversized value or invalid key is Permanent.
func Classify(err error) runcore.Outcome {
	switch {
	case err == nil:
		return runcore.OK
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, jetstream.ErrInvalidKey),
		errors.Is(err, nats.ErrBadSubject), errors.Is(err, jetstream.ErrBucketNotFound):
		return runcore.Permanent
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionClosed):
		return runcore.Failed
	}
	return runcore.Uncertain
}

// Conn returns the underlying connection.
func (a *Adapter) Conn() *nats.Conn { return a.nc }

// KV returns the handle of one bucket (nil if unknown).
func (a *Adapter) KV(bucket string) jetstream.KeyValue { return a.kv[bucket] }

// Watch replays every bucket from revision 0 (the latest value of each key)
// and then follows it, delivering opcore.KVPut / KVDelete inputs to sink,
// and KVReplayed{Bucket} once a bucket's replay is complete. It returns when
// ctx ends or a watcher fails. sink is called from one goroutine per bucket.
func (a *Adapter) Watch(ctx context.Context, buckets []string, sink func(opcore.Input)) error {
	errc := make(chan error, len(buckets))
	for _, b := range buckets {
		kv := a.kv[b]
		if kv == nil {
			return fmt.Errorf("watch: unknown bucket %q", b)
		}
		w, err := kv.WatchAll(ctx)
		if err != nil {
			return fmt.Errorf("watch bucket %s: %w", b, err)
		}
		go func(b string, w jetstream.KeyWatcher) {
			defer func() { _ = w.Stop() }()
			for {
				select {
				case <-ctx.Done():
					errc <- nil
					return
				case e, ok := <-w.Updates():
					if !ok {
						errc <- fmt.Errorf("watch bucket %s: closed", b)
						return
					}
					if e == nil {
						sink(opcore.KVReplayed{Bucket: b})
						continue
					}
					switch e.Operation() {
					case jetstream.KeyValuePut:
						sink(opcore.KVPut{Bucket: b, Key: e.Key(), Value: e.Value(), Revision: e.Revision()})
					default:
						sink(opcore.KVDelete{Bucket: b, Key: e.Key(), Revision: e.Revision()})
					}
				}
			}
		}(b, w)
	}
	for range buckets {
		if err := <-errc; err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Put writes value at key.
func (a *Adapter) Put(ctx context.Context, bucket, key string, value []byte) error {
	kv := a.kv[bucket]
	if kv == nil {
		return fmt.Errorf("put %s/%s: unknown bucket", bucket, key)
	}
	if _, err := kv.Put(ctx, key, value); err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return nil
}

// Delete deletes key; deleting a missing key is not an error.
func (a *Adapter) Delete(ctx context.Context, bucket, key string) error {
	kv := a.kv[bucket]
	if kv == nil {
		return fmt.Errorf("delete %s/%s: unknown bucket", bucket, key)
	}
	if err := kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete %s/%s: %w", bucket, key, err)
	}
	return nil
}

// Command sends req to device-commands.<device>.<verb> and waits up to
// timeout for the reply. Failures are *core.CommandError values usable with
// errors.Is: core.ErrOffline when no agent is subscribed (no responders),
// core.ErrTimeout, core.ErrBadReply for a reply that does not decode or
// answers another request, and the agent's own error code otherwise.
func (a *Adapter) Command(ctx context.Context, device string, req core.CommandRequest, timeout time.Duration) (core.CommandReply, error) {
	return Command(ctx, a.nc, device, req, timeout)
}

// Command is Adapter.Command on a bare connection.
func Command(ctx context.Context, nc *nats.Conn, device string, req core.CommandRequest, timeout time.Duration) (core.CommandReply, error) {
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	if err := core.ValidateDeviceName(device); err != nil {
		return core.CommandReply{}, fmt.Errorf("command: %w", err)
	}
	body, err := req.Encode()
	if err != nil {
		return core.CommandReply{}, fmt.Errorf("command %s to %s: %w", req.Verb, device, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, core.CommandSubject(device, req.Verb), body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return core.CommandReply{}, &core.CommandError{Code: core.ErrCodeOffline,
			Message: fmt.Sprintf("no agent of device %s is subscribed", device)}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return core.CommandReply{}, &core.CommandError{Code: core.ErrCodeTimeout,
			Message: fmt.Sprintf("no reply from device %s within %s", device, timeout)}
	case err != nil:
		return core.CommandReply{}, fmt.Errorf("command %s to %s: %w", req.Verb, device, err)
	}
	return runcore.DecodeReply(req, msg.Data)
}

// ErrorCode maps a Command error onto the code opcore.CommandResult
// carries ("" for success).
func ErrorCode(err error) (core.ErrorCode, string) { return runcore.ErrorCode(err) }
