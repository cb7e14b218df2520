package opcore

import (
	"math"
	"strings"
	"time"
)

// The core's two priority queues: deadlines (offline and attempt timeouts)
// and the names of devices waiting to start in a rollout. Both are popped
// once per device per timeout or start, which at fleet scale makes them hot:
// they are typed heaps rather than container/heap, whose interface calls and
// boxing of every element cost more than the comparisons themselves.
//
// The order is a strict total order on the distinguishable elements, so any
// correct heap pops them in the same sequence as container/heap did; only
// elements that compare equal (the same deadline pushed twice) may come out
// in another order, and popping either first has the same effect.

type deadlineKind uint8

const (
	dlOffline deadlineKind = iota
	dlAttempt
)

// deadline is a timeout for one device. dev is the device the deadline was
// pushed for; name is kept beside it for the order (no pointer chase) and
// for the rare case that the device was dropped and its name has a new
// device since (see Operator.expire).
type deadline struct {
	at time.Time
	// key is at as nanoseconds since a fixed instant (timeKeys.epoch),
	// compared instead of at when exact: an integer comparison instead of
	// time.Time's.
	key     int64
	exact   bool
	kind    deadlineKind
	attempt uint32
	name    string
	dev     *device
}

// before orders deadlines by time, then device name, then kind.
func (a *deadline) before(b *deadline) bool {
	if a.exact && b.exact {
		if a.key != b.key {
			return a.key < b.key
		}
	} else if c := a.at.Compare(b.at); c != 0 {
		return c < 0
	}
	// Equal times are common (a simulator's clock ticks in steps): one
	// comparison of the names, not != and then <.
	if c := strings.Compare(a.name, b.name); c != 0 {
		return c < 0
	}
	return a.kind < b.kind
}

// timeKeys turns deadline times into integer keys that order exactly as
// time.Time.Compare does. t.Sub(epoch) is exact unless it saturates, and
// comparing two such differences is comparing the times when t, the other
// time and epoch all carry a monotonic clock reading (Compare and Sub then
// use it) or none does (both use the wall clock). A time for which that
// does not hold is marked inexact and compared as a time.Time.
type timeKeys struct {
	epoch     time.Time
	epochMono bool
	set       bool
}

func hasMonotonic(t time.Time) bool { return t != t.Round(0) } // Round(0) strips it

func (k *timeKeys) key(t time.Time) (key int64, exact bool) {
	if !k.set {
		k.epoch, k.epochMono, k.set = t, hasMonotonic(t), true
	}
	d := t.Sub(k.epoch)
	if d == math.MinInt64 || d == math.MaxInt64 || hasMonotonic(t) != k.epochMono {
		return 0, false
	}
	return int64(d), true
}

// deadlineHeap is a 4-ary min-heap of deadlines: half the depth of a binary
// heap, and the four children of a node are adjacent in memory.
type deadlineHeap []deadline

func (h deadlineHeap) Len() int { return len(h) }

func (h *deadlineHeap) push(x deadline) {
	q := append(*h, x)
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 4
		if !x.before(&q[p]) {
			break
		}
		q[i] = q[p]
		i = p
	}
	q[i] = x
	*h = q
}

// pop removes and returns the earliest deadline; the heap must not be empty.
func (h *deadlineHeap) pop() deadline {
	q := *h
	top := q[0]
	n := len(q) - 1
	last := q[n]
	q[n] = deadline{} // drop the references for the garbage collector
	q = q[:n]
	if n > 0 {
		// Bottom-up: move the hole to a leaf along the smallest children,
		// then sift the last element up from there. The last element
		// belongs near the bottom, so this saves the comparison with it on
		// every level on the way down.
		i := 0
		for {
			c := 4*i + 1
			if c >= n {
				break
			}
			m := c
			for k := c + 1; k < c+4 && k < n; k++ {
				if q[k].before(&q[m]) {
					m = k
				}
			}
			q[i] = q[m]
			i = m
		}
		for i > 0 {
			p := (i - 1) / 4
			if !last.before(&q[p]) {
				break
			}
			q[i] = q[p]
			i = p
		}
		q[i] = last
	}
	*h = q
	return top
}

// nameHeap is a 4-ary min-heap of device names (the waiting devices of a
// deployment or rollout; the caller keeps names unique).
type nameHeap []string

func (h nameHeap) Len() int { return len(h) }

func (h *nameHeap) push(x string) {
	q := append(*h, x)
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 4
		if x >= q[p] {
			break
		}
		q[i] = q[p]
		i = p
	}
	q[i] = x
	*h = q
}

// pop removes and returns the smallest name; the heap must not be empty.
func (h *nameHeap) pop() string {
	q := *h
	top := q[0]
	n := len(q) - 1
	last := q[n]
	q[n] = ""
	q = q[:n]
	if n > 0 {
		i := 0
		for {
			c := 4*i + 1
			if c >= n {
				break
			}
			m := c
			for k := c + 1; k < c+4 && k < n; k++ {
				if q[k] < q[m] {
					m = k
				}
			}
			if q[m] >= last {
				break
			}
			q[i] = q[m]
			i = m
		}
		q[i] = last
	}
	*h = q
	return top
}
