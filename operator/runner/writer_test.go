package runner

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

type recordingStore struct {
	mu      sync.Mutex
	gate    chan struct{}
	applied []opcore.Effect
}

func (s *recordingStore) Run(ctx context.Context, _ func(opcore.Input)) error {
	<-ctx.Done()
	return nil
}
func (s *recordingStore) Apply(_ context.Context, e opcore.Effect) error {
	<-s.gate
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = append(s.applied, e)
	return nil
}

func TestObjectWriterKeepsTheNewestStatusAndWritesInOrderPerObject(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	st := &recordingStore{gate: make(chan struct{})}
	w := newObjectWriter(ctx, st, 1, nil, &wg)
	status := func(attempt uint32) opcore.Effect {
		return opcore.PatchDeviceStatus{Name: "d1", Status: opcore.DeviceStatus{Upgrade: opcore.DeviceUpgrade{StopSentAttempt: attempt}}}
	}
	_ = w.submit(status(1), false) // picked up by the worker, blocked in Apply
	time.Sleep(50 * time.Millisecond)
	_ = w.submit(status(2), false) // pending
	done := make(chan error, 1)
	go func() { done <- w.submit(status(3), true) }() // replaces 2, waits
	time.Sleep(50 * time.Millisecond)
	close(st.gate)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting submit never returned")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.applied) != 2 {
		t.Fatalf("applied %d writes, want 2 (the superseded one dropped)", len(st.applied))
	}
	for i, want := range []uint32{1, 3} {
		if got := st.applied[i].(opcore.PatchDeviceStatus).Status.Upgrade.StopSentAttempt; got != want {
			t.Fatalf("write %d carries attempt %d, want %d", i, got, want)
		}
	}
}
