// Package runcore is the operator runner's protocol logic as a
// deterministic state machine: (*Machine).Step(now, event) returns the
// actions a shell carries out. The machine owns the decision core
// (opcore.Operator) and decides everything between it and the world:
//
//   - the NATS connection state (Connected / Disconnected events);
//   - opening (creating) the KV buckets, retried with back-off;
//   - one watch per bucket, created from the last revision seen + 1 and
//     recreated with back-off after WatchFailed, and after every reconnect
//     (a watch goes quiet after a server restart); entries at or below the
//     last revision are dropped; KVReplayed reaches the core once per bucket;
//   - a bounded KV outbox: the newest value per key, a bounded number of
//     writes in flight, a deadline per write, retry with back-off, never
//     blocking the core; a write that timed out (it may have landed) is
//     reconciled with a Get before anything is re-planned;
//   - device commands: request bytes encoded with core, the reply decoded
//     and matched (DecodeReply, the one copy), outcomes as CommandResult;
//   - the guarded stop: a PatchDeviceStatus carrying a new StopSentAttempt
//     is durably written before its upgrade-stop Request is issued;
//   - object writes: newest status per object, one write in flight per
//     object, bounded parallelism;
//   - the tick timer (one ArmTimer, honouring opcore's WakeAt).
//
// It performs no I/O, starts no goroutines, reads no clock and draws no
// global randomness (back-off jitter comes from Config.Seed). The production
// adapter (operator/runner) and the simulator drive this very code.
package runcore

import (
	"log/slog"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

// Config is fixed for the life of one machine. Zero fields take defaults.
type Config struct {
	Core opcore.Config
	// Buckets the machine watches and feeds to the core, in this order.
	// Default: the six buckets opcore reads. Every bucket in core.Buckets is
	// opened (created with CreateBuckets) before writes go out.
	Buckets []string
	// CreateBuckets makes OpenBucket actions create missing buckets.
	CreateBuckets bool
	// WriteTimeout is the deadline of each KV write and Get. Default 5s.
	WriteTimeout time.Duration
	// WatchTimeout bounds watch creation and bucket opening. Default 5s.
	WatchTimeout time.Duration
	// CommandTimeout bounds each device command. Default 5s.
	CommandTimeout time.Duration
	// MaxWritesInFlight bounds concurrent KV writes and Gets. Default 64.
	MaxWritesInFlight int
	// MaxOutbox bounds the keys waiting to be written; a write of a new key
	// beyond it is refused at once (KVWriteFailed to the core, which
	// retries on a later tick). Default 1,000,000.
	MaxOutbox int
	// ObjectWriters bounds object writes in flight (one per object at a
	// time). Default 4.
	ObjectWriters int
	// RetryMin and RetryMax bound the exponential back-off of retries.
	// Defaults 250ms and 10s.
	RetryMin, RetryMax time.Duration
	// Seed seeds the back-off jitter.
	Seed uint64
	// Observe, if set, sees every core input and the effects it produced.
	Observe func(now time.Time, in opcore.Input, effects []opcore.Effect)
}

// OperatorBuckets are the buckets opcore reads.
var OperatorBuckets = []string{core.BucketDesiredState, core.BucketDeviceInfo,
	core.BucketDeviceState, core.BucketDeviceHeartbeat, core.BucketAgentUpgrade,
	core.BucketAgentUpgradeStatus}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.Core = c.Core.WithDefaults()
	if len(c.Buckets) == 0 {
		c.Buckets = OperatorBuckets
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.WatchTimeout <= 0 {
		c.WatchTimeout = 5 * time.Second
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = 5 * time.Second
	}
	if c.MaxWritesInFlight <= 0 {
		c.MaxWritesInFlight = 64
	}
	if c.MaxOutbox <= 0 {
		c.MaxOutbox = 1_000_000
	}
	if c.ObjectWriters <= 0 {
		c.ObjectWriters = 4
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 250 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 10 * time.Second
	}
	return c
}

// ---- Events ----------------------------------------------------------------

// Event is a fact delivered to Step.
type Event interface{ isEvent() }

// Start is the first event: it arms the tick timer.
type Start struct{}

// Connected: the NATS connection is up (first connect or reconnect).
type Connected struct{}

// Disconnected: the NATS connection is down (the client reconnects by
// itself).
type Disconnected struct{ Err string }

// BucketOpened is the outcome of an OpenBucket action.
type BucketOpened struct {
	Bucket string
	Err    string // "" on success
}

// WatchEntry is an entry of the watch Gen of Bucket.
type WatchEntry struct {
	Bucket   string
	Gen      uint64
	Key      string
	Value    []byte
	Revision uint64
	Delete   bool // a delete or purge
}

// WatchReplayed: watch Gen of Bucket has delivered its initial values.
type WatchReplayed struct {
	Bucket string
	Gen    uint64
}

// WatchFailed: watch Gen of Bucket could not be created or has ended.
type WatchFailed struct {
	Bucket string
	Gen    uint64
	Err    string
}

// Outcome classifies how a NATS operation ended.
type Outcome uint8

const (
	// OK: done.
	OK Outcome = iota
	// Failed: definitely not carried out (e.g. no responders); retry.
	Failed
	// Uncertain: the deadline passed or the link dropped; a write may have
	// landed anyway, a request may have been delivered.
	Uncertain
	// Permanent: can never succeed as it is (max payload, invalid key).
	Permanent
	// NoResponders: a request found no subscriber.
	NoResponders
	// NotFound: a Get found no value (or the latest entry is a delete).
	NotFound
)

var outcomeNames = [...]string{"ok", "failed", "uncertain", "permanent", "no-responders", "not-found"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// WriteDone is the outcome of a Write action (exactly one per token).
type WriteDone struct {
	Token   uint64
	Outcome Outcome // OK, Failed, Uncertain or Permanent
	Err     string
}

// GetDone is the outcome of a Get action (exactly one per token).
type GetDone struct {
	Token   uint64
	Outcome Outcome // OK (Value holds the value), NotFound, or a failure
	Value   []byte
	Err     string
}

// ReplyDone is the outcome of a Request action (exactly one per token).
type ReplyDone struct {
	Token   uint64
	Outcome Outcome // OK (Data holds the reply), NoResponders, Uncertain (timeout) or Failed
	Data    []byte
	Err     string
}

// Object is an object-store input (Upserts, Deleted, CachesSynced).
type Object struct{ In opcore.Input }

// ObjectDone is the outcome of an ApplyObject action.
type ObjectDone struct {
	Token uint64
	Err   string
}

// TimerFired: the timer of the last ArmTimer has expired (early or late
// firing is harmless).
type TimerFired struct{}

func (Start) isEvent()         {}
func (Connected) isEvent()     {}
func (Disconnected) isEvent()  {}
func (BucketOpened) isEvent()  {}
func (WatchEntry) isEvent()    {}
func (WatchReplayed) isEvent() {}
func (WatchFailed) isEvent()   {}
func (WriteDone) isEvent()     {}
func (GetDone) isEvent()       {}
func (ReplyDone) isEvent()     {}
func (Object) isEvent()        {}
func (ObjectDone) isEvent()    {}
func (TimerFired) isEvent()    {}

// ---- Actions ---------------------------------------------------------------

// Action is a request returned by Step; the shell carries actions out in
// order and reports each outcome as the event named on it.
type Action interface{ isAction() }

// OpenBucket opens (with Create, creates) a KV bucket → BucketOpened.
type OpenBucket struct {
	Bucket  string
	Create  bool
	Timeout time.Duration
}

// CreateWatch watches Bucket: From == 0 means the latest value of every
// key then updates; otherwise every entry from revision From. Entries →
// WatchEntry, end of the initial values → WatchReplayed, failure →
// WatchFailed, all tagged with Gen. A new Gen replaces the old watch.
type CreateWatch struct {
	Bucket  string
	Gen     uint64
	From    uint64
	Timeout time.Duration
}

// StopWatch stops watch Gen of Bucket (its late events are ignored).
type StopWatch struct {
	Bucket string
	Gen    uint64
}

// Write puts Value at Key (or deletes Key) under a deadline → WriteDone.
type Write struct {
	Token   uint64
	Bucket  string
	Key     string
	Value   []byte
	Delete  bool
	Timeout time.Duration
}

// Get reads Key under a deadline → GetDone.
type Get struct {
	Token   uint64
	Bucket  string
	Key     string
	Timeout time.Duration
}

// Request sends Data to Subject and waits for one reply → ReplyDone.
type Request struct {
	Token   uint64
	Device  string
	Verb    core.Verb
	Attempt uint32
	Subject string
	Data    []byte
	Timeout time.Duration
}

// ApplyObject carries out an object effect (a status patch, CreateDevice,
// PatchDeviceLabels, RemoveFinalizer or a Notice with a Kind) →
// ObjectDone.
type ApplyObject struct {
	Token  uint64
	Effect opcore.Effect
}

// Log is a line for the shell's logger.
type Log struct {
	Level slog.Level
	Msg   string
	Args  []any
}

// ArmTimer asks for TimerFired at At (replacing any earlier timer).
type ArmTimer struct{ At time.Time }

func (OpenBucket) isAction()  {}
func (CreateWatch) isAction() {}
func (StopWatch) isAction()   {}
func (Write) isAction()       {}
func (Get) isAction()         {}
func (Request) isAction()     {}
func (ApplyObject) isAction() {}
func (Log) isAction()         {}
func (ArmTimer) isAction()    {}

// Status is what readiness probes and metrics report.
type Status struct {
	Connected      bool
	BucketsReady   bool // every bucket opened
	WatchesActive  int  // watches created and not failed
	Converged      bool // the core's recovery latch
	OutboxDepth    int  // keys waiting to be written or reconciled (in flight included)
	WritesInFlight int  // Writes and Gets in flight
	ObjectBacklog  int  // object writes queued or in flight
	Commands       int  // requests in flight

	WriteRetries   uint64 // writes issued again after a failure
	Reconciles     uint64 // Gets issued after an uncertain write
	ReconcileLand  uint64 // of those, the write had landed
	WatchRestarts  uint64 // watches recreated (after a failure or reconnect)
	OutboxRefused  uint64 // writes refused because the outbox was full
	WritesFailed   uint64 // permanent failures reported to the core
	ObjectFailures uint64
}
