package web

import (
	"sort"
	"sync"
)

// Change kinds carried by the Broker.
const (
	KindDevice     = "device"
	KindRollout    = "rollout"
	KindDeployment = "deployment"
)

// Change names one object whose view changed.
type Change struct {
	Kind string // KindDevice, KindRollout or KindDeployment
	Name string
}

// Broker fans changes out to subscribers. A subscriber never blocks a
// publisher: each one holds a coalescing set of pending changes and a
// one-slot wake-up channel, so a burst of 10,000 updates to the same rows
// costs the slow reader one drain, not 10,000 sends.
type Broker struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// NewBroker returns an empty broker.
func NewBroker() *Broker { return &Broker{subs: map[*Subscription]struct{}{}} }

// Subscription receives changes until Close.
type Subscription struct {
	b       *Broker
	mu      sync.Mutex
	pending map[Change]struct{}
	// Ready gets a value whenever pending goes from empty to non-empty.
	Ready chan struct{}
}

// Subscribe registers a subscriber.
func (b *Broker) Subscribe() *Subscription {
	s := &Subscription{b: b, pending: map[Change]struct{}{}, Ready: make(chan struct{}, 1)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Publish queues changes for every subscriber.
func (b *Broker) Publish(changes ...Change) {
	if len(changes) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		s.mu.Lock()
		for _, c := range changes {
			s.pending[c] = struct{}{}
		}
		s.mu.Unlock()
		select {
		case s.Ready <- struct{}{}:
		default:
		}
	}
}

// Subscribers is the number of live subscriptions.
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Drain returns and clears the pending changes, sorted by kind then name.
func (s *Subscription) Drain() []Change {
	s.mu.Lock()
	out := make([]Change, 0, len(s.pending))
	for c := range s.pending {
		out = append(out, c)
	}
	clear(s.pending)
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Close unregisters the subscription.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	delete(s.b.subs, s)
	s.b.mu.Unlock()
}
