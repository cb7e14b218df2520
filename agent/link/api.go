// Package link is the agent shell's protocol logic as a deterministic state
// machine: (*Link).Step(now, event) []Action.
//
// A Link owns one agentcore decision core (or a stand-in with the same Step)
// and everything that used to live in the shell's goroutines: the KV outbox
// (newest value per key, one write in flight, a deadline per write, retry
// with back-off, nothing lost while disconnected), the supervision of the
// two KV watches (desired state, the upgrade marker) with their last
// revision, bucket creation, end of replay, the command-handle table, the
// order in which the core's effects are carried out, the inference that a
// candidate has become the active agent, and the collection of orphaned
// workloads.
//
// It performs no I/O, starts no goroutines, reads no clock and draws no
// global randomness (jitter comes from Config.Seed). The production adapter
// (agent/shell) and the simulator (sim/device.go) carry out its actions and
// feed back what happened as events. Both run this very code.
//
// # Effect order
//
// The core's effects run in the order the core returned them. Effects that
// change the disk or the process tree (AppendJournal, SwapCurrent,
// PreserveRunning, RemoveVersion, StartCandidate, StopCandidate,
// ReadJournal) are handed out one at a time as ActInline, always as the
// last action of a batch: the adapter completes it and reports Done before
// the link hands out anything after it. Inputs that arrive meanwhile wait.
// Everything else (downloads, self-tests, workloads, logs, exec) is
// asynchronous: ActRun, with the result coming back later as an event.
package link

import (
	"errors"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
)

// Core is the decision core a link drives (agentcore.Agent). The link does
// not keep the returned slice past the next Step of the core.
type Core interface {
	Step(now time.Time, in agentcore.Input) []agentcore.Effect
}

// Config is fixed for the life of one agent process.
type Config struct {
	Device           string
	Version          core.Version // the running binary
	CandidateAttempt uint32       // non-zero: this process is the candidate of that attempt

	// Core is the decision core; nil: agentcore.New(Agent).
	Core  Core
	Agent agentcore.Config

	// Seed seeds the back-off jitter (a fleet must not retry in lock-step).
	Seed uint64

	// Observe, when set, sees every core step (the simulator's checker).
	Observe func(in agentcore.Input, effs []agentcore.Effect)

	// HeartbeatBuf, when set, supplies the buffer (len 0, cap at least
	// core.MaxHeartbeatBytes) each heartbeat is encoded into and the object
	// handed out with its write as Action.Obj, so that an adapter can keep a
	// heartbeat write in one allocation (the simulator). Default: the link
	// allocates both, Obj being a *core.Heartbeat.
	HeartbeatBuf func(hb core.Heartbeat) (buf []byte, obj any)

	// Actions, when set, is an action buffer shared by many links (the
	// simulator's 100,000): Step appends into it, so a link keeps no buffer
	// of its own. The caller must consume the actions of one Step before it
	// steps any other link sharing the buffer.
	Actions *[]Action

	// WriteTimeout bounds one KV write, watch creation or bucket creation;
	// default 5s (nats.go's default).
	WriteTimeout time.Duration
}

// Timeouts and back-off bounds.
const (
	DefaultTimeout  = 5 * time.Second
	HandleTTL       = 5 * time.Minute // a command the core never answers is forgotten after this
	ExitFlush       = 3 * time.Second // bound on the outbox drain before an Exit (a handover drops the outbox instead)
	ReexecFlush     = 2 * time.Second // bound on the outbox drain before a re-exec or a stop
	writeBackoffMin = 100 * time.Millisecond
	watchBackoffMin = 250 * time.Millisecond
	maxBackoff      = 5 * time.Second
)

// ErrBucketNotFound is what adapters report (wrapped or as is) when a KV
// bucket does not exist; the link then asks for it to be created.
var ErrBucketNotFound = errors.New("bucket not found")

// WatchID names one of the link's two watches.
type WatchID uint8

const (
	WatchDesired WatchID = iota // desired-state.<device>.>
	WatchMarker                 // agent-upgrade.<device>
	numWatches
)

// Timer names a timer the adapter arms for the link. The core's four timers
// come first.
type Timer uint8

const (
	TimerHeartbeat Timer = iota
	TimerInfo
	TimerCutover
	TimerCandidatePoll
	TimerOutbox       // retry the oldest KV write
	TimerWatchDesired // re-create the desired-state watch
	TimerWatchMarker  // re-create the marker watch
	TimerExit         // stop waiting for the outbox to drain before an exit
	NumTimers
)

// Op is a KV entry's operation.
type Op uint8

const (
	OpPut Op = iota
	OpDelete
	OpPurge
)

// Entry is one KV entry as a watch delivers it.
type Entry struct {
	Key   string
	Value []byte
	Rev   uint64
	Op    Op
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EvStart is the first event: In is the agentcore.Start the adapter read
	// from disk.
	EvStart EventKind = iota + 1
	// EvInput is an input for the core from an asynchronous action
	// (DownloadDone, SelfTestDone, CandidateExited, WorkloadStatus).
	EvInput
	// EvDone reports the ActInline handed out last: Err, and Records for
	// ReadJournal.
	EvDone
	// EvConn reports the connection state: Up.
	EvConn
	// EvWriteDone reports ActWrite Token: Err.
	EvWriteDone
	// EvBucketCreated reports ActCreateBucket Bucket: Err.
	EvBucketCreated
	// EvWatchEntry is one entry of watch Watch, creation Gen.
	EvWatchEntry
	// EvWatchReplayed marks the end of the initial replay of watch Watch,
	// creation Gen; Rev is the bucket's last revision when known (0: not).
	EvWatchReplayed
	// EvWatchFailed reports that creation Gen of watch Watch failed or
	// ended: Err.
	EvWatchFailed
	// EvCommand is a command request: Subject, Data and the adapter's Reply
	// handle (echoed in ActRespond).
	EvCommand
	// EvCommandResult answers an ActRun FetchLogs or RunExec: Handle, Result.
	EvCommandResult
	// EvTimer is timer Timer of arming Gen firing.
	EvTimer
	// EvStop asks the process to end (SIGTERM): the core gets no more
	// inputs; ActExit(0) follows once the outbox drained (at most
	// ReexecFlush).
	EvStop
)

// Event is a fact delivered to Step. It is a plain struct (not an interface)
// so that the frequent events cost no allocation.
type Event struct {
	Kind    EventKind
	In      agentcore.Input
	Err     error
	Records []agentcore.Record
	Up      bool
	Token   uint64
	Bucket  string
	Watch   WatchID
	Gen     uint32
	Entry   Entry
	Rev     uint64
	Subject string
	Data    []byte
	Reply   any
	Handle  uint64
	Result  core.CommandReply
	Timer   Timer
}

// Constructors for events.
func Started(st agentcore.Start) Event { return Event{Kind: EvStart, In: st} }
func Input(in agentcore.Input) Event   { return Event{Kind: EvInput, In: in} }
func Done(err error) Event             { return Event{Kind: EvDone, Err: err} }
func JournalDone(recs []agentcore.Record, err error) Event {
	return Event{Kind: EvDone, Records: recs, Err: err}
}
func Conn(up bool) Event { return Event{Kind: EvConn, Up: up} }
func WriteDone(token uint64, err error) Event {
	return Event{Kind: EvWriteDone, Token: token, Err: err}
}
func BucketCreated(bucket string, err error) Event {
	return Event{Kind: EvBucketCreated, Bucket: bucket, Err: err}
}
func WatchEntry(w WatchID, gen uint32, e Entry) Event {
	return Event{Kind: EvWatchEntry, Watch: w, Gen: gen, Entry: e}
}
func WatchReplayed(w WatchID, gen uint32, bucketRev uint64) Event {
	return Event{Kind: EvWatchReplayed, Watch: w, Gen: gen, Rev: bucketRev}
}
func WatchFailed(w WatchID, gen uint32, err error) Event {
	return Event{Kind: EvWatchFailed, Watch: w, Gen: gen, Err: err}
}
func Command(subject string, data []byte, reply any) Event {
	return Event{Kind: EvCommand, Subject: subject, Data: data, Reply: reply}
}
func CommandResult(handle uint64, r core.CommandReply) Event {
	return Event{Kind: EvCommandResult, Handle: handle, Result: r}
}
func Fired(t Timer, gen uint32) Event { return Event{Kind: EvTimer, Timer: t, Gen: gen} }
func Stop() Event                     { return Event{Kind: EvStop} }

// ActionKind says what an Action asks for.
type ActionKind uint8

const (
	// ActConnect: dial NATS (retrying forever) and subscribe to the device's
	// command subject. Emitted once, after start-up recovery.
	ActConnect ActionKind = iota + 1
	// ActBecomeActive: this process is now the device's active agent: adopt
	// running workloads, record the PID.
	ActBecomeActive
	// ActWrite: KV put (or delete when Delete) of Bucket/Key under Timeout;
	// answer with EvWriteDone(Token). Obj is the decoded value (for
	// adapters that want it: the simulator's readers).
	ActWrite
	// ActCreateBucket: create KV bucket Bucket (exists counts as success);
	// answer with EvBucketCreated.
	ActCreateBucket
	// ActCreateWatch: watch Bucket/Filter from revision From (0: the latest
	// value per key, then updates), replacing creation Gen-1; report
	// entries, the end of the replay and failure tagged with Watch and Gen.
	ActCreateWatch
	// ActStopWatch: stop creation Gen of watch Watch.
	ActStopWatch
	// ActRespond: publish Data to the command's Reply handle.
	ActRespond
	// ActArmTimer: (re-)arm Timer to fire After from now as EvTimer(Gen).
	ActArmTimer
	// ActCancelTimer: disarm Timer (a late fire is ignored anyway).
	ActCancelTimer
	// ActRun: start an asynchronous core effect (Download, SelfTest,
	// StartWorkload, StopWorkload, FetchLogs, RunExec) or write a Log.
	ActRun
	// ActInline: carry out Effect (AppendJournal, SwapCurrent,
	// PreserveRunning, RemoveVersion, StartCandidate, StopCandidate,
	// ReadJournal) to completion and report EvDone before anything else.
	ActInline
	// ActStopWorkloadsExcept: stop adopted workloads whose deployment is not
	// in Deployments (sorted).
	ActStopWorkloadsExcept
	// ActExit: end the process with Code (Effect is the core's Exit or
	// Reexec; for Reexec, exec that version).
	ActExit
)

// Action is a request returned by Step, carried out in order.
type Action struct {
	Kind        ActionKind
	Effect      agentcore.Effect
	Token       uint64
	Bucket      string
	Key         string
	Filter      string
	Value       []byte
	Obj         any
	Delete      bool
	Timeout     time.Duration
	Watch       WatchID
	Gen         uint32
	From        uint64
	Reply       any
	Data        []byte
	Timer       Timer
	After       time.Duration
	Deployments []string
	Code        int
}
