package runner

import (
	"context"
	"hash/fnv"
	"sync"

	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

// objectWriter carries out object effects (status patches, labels,
// finalizers) off the core's goroutine, in parallel across objects but in
// order per object, keeping only the newest pending status of each object:
// after a restart 100,000 Device statuses must not queue behind each other.
type objectWriter struct {
	store  Store
	onErr  func(opcore.Effect, error)
	shards []*writerShard
}

type writerShard struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending map[string]*pendingWrite
	order   []string
	seq     int
	closed  bool
}

type pendingWrite struct {
	e    opcore.Effect
	done []chan error
}

func newObjectWriter(ctx context.Context, store Store, workers int, onErr func(opcore.Effect, error), wg *sync.WaitGroup) *objectWriter {
	w := &objectWriter{store: store, onErr: onErr}
	for i := 0; i < workers; i++ {
		s := &writerShard{pending: map[string]*pendingWrite{}}
		s.cond = sync.NewCond(&s.mu)
		w.shards = append(w.shards, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, s)
		}()
	}
	go func() {
		<-ctx.Done()
		for _, s := range w.shards {
			s.mu.Lock()
			s.closed = true
			s.cond.Broadcast()
			s.mu.Unlock()
		}
	}()
	return w
}

// objectKey names the object an effect writes; status patches of one object
// replace each other, other writes never do.
func objectKey(e opcore.Effect) (key string, coalesce bool) {
	switch e := e.(type) {
	case opcore.PatchDeploymentStatus:
		return "Deployment/" + e.Name, true
	case opcore.PatchDeviceStatus:
		return "Device/" + e.Name, true
	case opcore.PatchAgentRolloutStatus:
		return "AgentRollout/" + e.Name, true
	case opcore.CreateDevice:
		return "Device/" + e.Name, false
	case opcore.PatchDeviceLabels:
		return "Device/" + e.Name, false
	case opcore.RemoveFinalizer:
		return e.Kind + "/" + e.Name, false
	case opcore.Notice:
		return e.Kind + "/" + e.Name, false
	}
	return "", false
}

func (w *objectWriter) shard(key string) *writerShard {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return w.shards[int(h.Sum32())%len(w.shards)]
}

// submit queues e; with wait, it returns e's outcome once written (after
// every earlier write of the same object).
func (w *objectWriter) submit(e opcore.Effect, wait bool) error {
	key, coalesce := objectKey(e)
	s := w.shard(key)
	var done chan error
	if wait {
		done = make(chan error, 1)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return context.Canceled
	}
	slot := key
	if !coalesce {
		// A unique slot: never replaced, still ordered after earlier writes
		// of the object by the FIFO.
		s.seq++
		slot = key + "#" + itoa(s.seq)
	}
	if p := s.pending[slot]; p != nil {
		p.e = e
		if done != nil {
			p.done = append(p.done, done)
		}
	} else {
		p := &pendingWrite{e: e}
		if done != nil {
			p.done = append(p.done, done)
		}
		s.pending[slot] = p
		s.order = append(s.order, slot)
	}
	s.cond.Signal()
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	return <-done
}

func (w *objectWriter) run(ctx context.Context, s *writerShard) {
	for {
		s.mu.Lock()
		for len(s.order) == 0 && !s.closed {
			s.cond.Wait()
		}
		if s.closed {
			for _, p := range s.pending {
				for _, d := range p.done {
					d <- context.Canceled
				}
			}
			s.mu.Unlock()
			return
		}
		slot := s.order[0]
		s.order = s.order[1:]
		p := s.pending[slot]
		delete(s.pending, slot)
		s.mu.Unlock()
		err := w.store.Apply(ctx, p.e)
		if err != nil && w.onErr != nil {
			w.onErr(p.e, err)
		}
		for _, d := range p.done {
			d <- err
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
