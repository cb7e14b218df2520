// Package kernel is the simulator's discrete-event kernel: one goroutine, a
// radix heap of events ordered by (virtual time, scheduling order), one master seed with a
// derived PCG stream per subsystem, and a canonical trace whose SHA-256 is
// the run's fingerprint.
//
// The kernel reads no clock and starts no goroutine: virtual time advances
// only when an event is popped. Same scenario + same seed ⇒ the same events in
// the same order ⇒ the same trace hash, whatever GOMAXPROCS is.
package kernel

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"hash/fnv"
	"math/rand/v2"
	"time"
)

// Epoch is virtual time zero as wall-clock time handed to the cores.
var Epoch = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// Handler receives the events scheduled for it.
type Handler interface {
	Handle(k *Kernel, ev *Event)
}

// Event is one scheduled occurrence. Kind, A, B and P are the handler's to
// interpret; the kernel only orders events by At, then scheduling order
// (64 bytes: one cache line, since the queue copies events).
type Event struct {
	At     time.Duration
	Target Handler
	Kind   uint16
	A      uint64
	B      uint64
	P      any
}

// Kernel is the event loop. It is not safe for concurrent use: a simulation
// is one goroutine by design.
type Kernel struct {
	seed uint64
	now  time.Duration
	q    queue // pending events, ordered by (At, scheduling order)
	cur  Event // the event being handled

	events  uint64
	stopped bool
	stopErr error

	h      hash.Hash
	buf    []byte // canonical trace bytes not yet hashed
	text   TextSink
	traced uint64 // records appended
	rec    Rec
}

// TextSink receives human-readable trace lines when a run asks for them
// (--trace, replay). Rendering text is slow, so callers check Tracing first.
type TextSink interface {
	TraceLine(at time.Duration, line string)
}

// New returns a kernel at virtual time zero.
func New(seed uint64) *Kernel {
	return &Kernel{seed: seed, h: sha256.New(), buf: make([]byte, 0, 64<<10)}
}

// Seed is the master seed.
func (k *Kernel) Seed() uint64 { return k.seed }

// Now is the current virtual time.
func (k *Kernel) Now() time.Duration { return k.now }

// WallNow is the current virtual time as a time.Time (Epoch + Now).
func (k *Kernel) WallNow() time.Time { return Epoch.Add(k.now) }

// Events is the number of events handled so far.
func (k *Kernel) Events() uint64 { return k.events }

// Pending is the number of scheduled events.
func (k *Kernel) Pending() int { return k.q.n }

// Stream returns a PCG stream derived from the master seed and a subsystem
// name, so that adding draws in one subsystem never reshuffles another's dice.
func (k *Kernel) Stream(name string) *rand.Rand {
	return rand.New(DeriveSource(k.seed, name))
}

// DeriveSource is the PCG source of subsystem name under seed.
func DeriveSource(seed uint64, name string) *rand.PCG {
	f := fnv.New64a()
	f.Write([]byte(name))
	return rand.NewPCG(seed, f.Sum64()^0x9e3779b97f4a7c15)
}

// At schedules ev at absolute virtual time at (never before now).
func (k *Kernel) At(at time.Duration, ev Event) {
	if at < k.now {
		at = k.now
	}
	ev.At = at
	k.q.push(ev)
}

// After schedules ev d after now.
func (k *Kernel) After(d time.Duration, ev Event) { k.At(k.now+d, ev) }

// Stop ends Run after the current event; err (may be nil) is returned by Run.
func (k *Kernel) Stop(err error) {
	k.stopped = true
	if k.stopErr == nil {
		k.stopErr = err
	}
}

// Stopped reports whether Stop was called.
func (k *Kernel) Stopped() bool { return k.stopped }

// Run handles events in (time, scheduling order) order until the heap is empty, virtual
// time would pass until, or Stop is called. It returns Stop's error.
func (k *Kernel) Run(until time.Duration) error {
	for !k.stopped && k.q.next(until) {
		k.handle()
	}
	if !k.stopped && k.now < until {
		k.now = until
	}
	return k.stopErr
}

// Step handles exactly one event; it reports false when none is left.
func (k *Kernel) Step() bool {
	if k.stopped || !k.q.next(1<<63-1) {
		return false
	}
	k.handle()
	return true
}

// handle pops the next event and hands it to its target. The event lives in
// k.cur while it is handled (handlers must not keep the pointer): passing a
// pointer to a local through the Handler interface would make every event
// a heap allocation.
func (k *Kernel) handle() {
	k.cur = k.q.pop()
	k.now = k.cur.At
	k.events++
	k.cur.Target.Handle(k, &k.cur)
}

// ---- canonical trace ---------------------------------------------------------

// Tracing reports whether a text sink wants human-readable lines.
func (k *Kernel) Tracing() bool { return k.text != nil }

// SetTextSink installs (or with nil removes) the text trace sink.
func (k *Kernel) SetTextSink(s TextSink) { k.text = s }

// TraceText hands a rendered line to the text sink, if any. Text lines are
// not part of the fingerprint: the binary record is.
func (k *Kernel) TraceText(line string) {
	if k.text != nil {
		k.text.TraceLine(k.now, line)
	}
}

// Record starts a canonical trace record at the current virtual time and
// returns a builder for its fields; call Done to commit it. Records are
// hashed incrementally, never stored.
func (k *Kernel) Record(kind byte) *Rec {
	r := &k.rec
	r.k = k
	k.buf = binary.AppendUvarint(k.buf, uint64(k.now))
	k.buf = append(k.buf, kind)
	return r
}

// Rec appends the fields of one trace record.
type Rec struct{ k *Kernel }

// U appends an unsigned integer.
func (r *Rec) U(v uint64) *Rec { r.k.buf = binary.AppendUvarint(r.k.buf, v); return r }

// I appends a signed integer.
func (r *Rec) I(v int64) *Rec { r.k.buf = binary.AppendVarint(r.k.buf, v); return r }

// S appends a length-prefixed string.
func (r *Rec) S(s string) *Rec {
	r.k.buf = binary.AppendUvarint(r.k.buf, uint64(len(s)))
	r.k.buf = append(r.k.buf, s...)
	return r
}

// B appends length-prefixed bytes.
func (r *Rec) B(b []byte) *Rec {
	r.k.buf = binary.AppendUvarint(r.k.buf, uint64(len(b)))
	r.k.buf = append(r.k.buf, b...)
	return r
}

// Done terminates the record.
func (r *Rec) Done() {
	k := r.k
	k.buf = append(k.buf, 0xff)
	k.traced++
	if len(k.buf) >= 32<<10 {
		k.h.Write(k.buf)
		k.buf = k.buf[:0]
	}
}

// TraceRecords is the number of records appended.
func (k *Kernel) TraceRecords() uint64 { return k.traced }

// TraceHash is the SHA-256 of the canonical trace so far, as hex.
func (k *Kernel) TraceHash() string {
	if len(k.buf) > 0 {
		k.h.Write(k.buf)
		k.buf = k.buf[:0]
	}
	const hexd = "0123456789abcdef"
	sum := k.h.Sum(nil)
	out := make([]byte, 64)
	for i, b := range sum {
		out[2*i] = hexd[b>>4]
		out[2*i+1] = hexd[b&15]
	}
	return string(out)
}
