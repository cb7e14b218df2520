package kernel

import (
	"math/bits"
	"time"
)

// queue is a radix heap of events (Ahuja, Mehlhorn, Orlin and Tarjan, 1990),
// with ties broken by scheduling order. It relies on the kernel's
// time being monotone: no event is ever scheduled before the last one
// handled. Pushing is an append; popping mostly takes the head of bucket 0;
// an event moves to a lower bucket only when every earlier bucket is empty,
// and at most once per bit of its distance from the last minimum. Moves are
// sequential copies, so unlike a binary heap there are no unpredictable
// branches and no random memory accesses per event, which is what the
// kernel's time went into at 10k devices (50k pending events).
//
// Bucket 0 holds the events at exactly time last, from head on. Bucket
// i >= 1 holds the events whose time differs from last first in bit i-1
// (counting from 0). Events at the same time are always in the same bucket,
// in sequence order: a push appends (its seq is the highest yet), and moving
// a bucket down keeps its order. So bucket 0 is in sequence order without
// sorting, and events run in (At, seq) order.
type queue struct {
	last    time.Duration // the current minimum (the time of bucket 0)
	b       [65][]Event
	head    int    // next event of bucket 0
	nonzero uint64 // bit i-1 set: bucket i (1..64) is not empty
	n       int    // events pending
}

func (q *queue) bucket(at time.Duration) int {
	if at == q.last {
		return 0
	}
	return 64 - bits.LeadingZeros64(uint64(at^q.last))
}

// push adds ev (ev.At >= the time of the last event popped).
func (q *queue) push(ev Event) {
	if ev.At < q.last {
		panic("kernel: event scheduled in the past") // At clamps; unreachable
	}
	i := q.bucket(ev.At)
	q.b[i] = append(q.b[i], ev)
	if i > 0 {
		q.nonzero |= 1 << (i - 1)
	}
	q.n++
}

// next reports whether an event at or before until is pending, making it
// the head of bucket 0. When the earliest event is later than until nothing
// moves, so that later pushes before that time stay legal.
func (q *queue) next(until time.Duration) bool {
	if q.head < len(q.b[0]) {
		return q.last <= until
	}
	if q.nonzero == 0 {
		return false
	}
	i := bits.TrailingZeros64(q.nonzero) + 1
	src := q.b[i]
	lo := src[0].At
	for _, e := range src[1:] {
		lo = min(lo, e.At)
	}
	if lo > until {
		return false
	}
	// Every event of bucket i lands in a lower bucket relative to lo; the
	// higher buckets keep their meaning (lo agrees with last above bit i-1).
	q.b[0] = q.b[0][:0]
	q.head = 0
	q.last = lo
	q.nonzero &^= 1 << (i - 1)
	for j := range src {
		e := &src[j]
		k := q.bucket(e.At)
		q.b[k] = append(q.b[k], *e)
		if k > 0 {
			q.nonzero |= 1 << (k - 1)
		}
		*e = Event{} // drop references for the GC
	}
	q.b[i] = src[:0]
	return true
}

// pop removes and returns the head of bucket 0; call next first.
func (q *queue) pop() Event {
	b0 := q.b[0]
	ev := b0[q.head]
	b0[q.head] = Event{}
	q.head++
	q.n--
	if q.head == len(b0) {
		q.b[0] = b0[:0]
		q.head = 0
	}
	return ev
}
