//go:build envtest

package controller_test

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/flotilla-fleet/flotilla/core"
)

// fakeAgent plays a device's agent against the real operator over NATS: it
// heartbeats, follows upgrade markers the way docs/upgrade-protocol.md says
// (status → WaitingForStop with the candidate heartbeating for the
// attempt), and answers upgrade-stop. It writes only what an agent writes.
type fakeAgent struct {
	dev string

	mu        sync.Mutex
	version   core.Version
	candidate uint32 // attempt whose candidate is heartbeating (0: none)
	target    core.Version
	lastSeen  uint32 // last marker attempt acted upon
	fail      bool   // fail every attempt with ChecksumMismatch
	answer    bool   // reply to upgrade-stop (else: the reply is lost)
	stops     []uint32
	seq       uint32
	statusAt  int64
	cancel    context.CancelFunc
	sub       *nats.Subscription
}

func startFakeAgent(dev, version string) *fakeAgent {
	a := &fakeAgent{dev: dev, version: core.MustParseVersion(version), answer: true}
	ctx, cancel := context.WithCancel(suiteCtx)
	a.cancel = cancel
	sub, err := nc.Subscribe(core.CommandSubject(dev, core.VerbUpgradeStop), a.onStop)
	Expect(err).NotTo(HaveOccurred())
	a.sub = sub
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			a.step(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	DeferCleanup(func() { cancel(); _ = sub.Unsubscribe(); <-done })
	return a
}

func (a *fakeAgent) set(f func(a *fakeAgent)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

func (a *fakeAgent) stopsSeen() []uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]uint32(nil), a.stops...)
}

func (a *fakeAgent) putStatus(ctx context.Context, s core.UpgradeStatus) {
	a.statusAt++
	s.At = a.statusAt
	b, err := s.Encode()
	Expect(err).NotTo(HaveOccurred())
	_, _ = buckets[core.BucketAgentUpgradeStatus].Put(ctx, a.dev, b)
}

func (a *fakeAgent) step(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	hb := core.Heartbeat{AgentVersion: a.version, Seq: a.seq, UptimeSec: a.seq}
	if a.candidate != 0 {
		hb = core.Heartbeat{AgentVersion: a.target, Seq: a.seq, UptimeSec: a.seq, Attempt: a.candidate}
	}
	if b, err := hb.Encode(); err == nil {
		_, _ = buckets[core.BucketDeviceHeartbeat].Put(ctx, a.dev, b)
	}
	e, err := buckets[core.BucketAgentUpgrade].Get(ctx, a.dev)
	if errors.Is(err, jetstream.ErrKeyNotFound) || err != nil {
		return
	}
	m, err := core.DecodeUpgradeMarker(e.Value())
	if err != nil || m.Attempt <= a.lastSeen {
		return
	}
	a.lastSeen = m.Attempt
	to := m.TargetVersion
	if a.fail {
		a.putStatus(ctx, core.UpgradeStatus{Attempt: m.Attempt, Phase: core.UpgradeFailed, FromVersion: a.version,
			TargetVersion: &to, RunningVersion: a.version, Reason: core.ReasonChecksumMismatch, Detail: "sha256 differs"})
		return
	}
	a.putStatus(ctx, core.UpgradeStatus{Attempt: m.Attempt, Phase: core.UpgradeStaging, FromVersion: a.version,
		TargetVersion: &to, RunningVersion: a.version})
	a.putStatus(ctx, core.UpgradeStatus{Attempt: m.Attempt, Phase: core.UpgradeWaitingForStop, FromVersion: a.version,
		TargetVersion: &to, RunningVersion: a.version})
	a.candidate, a.target = m.Attempt, to
}

func (a *fakeAgent) onStop(msg *nats.Msg) {
	req, err := core.DecodeCommandRequest(core.VerbUpgradeStop, msg.Data)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stops = append(a.stops, req.UpgradeStop.Attempt)
	if a.candidate == 0 || req.UpgradeStop.Attempt != a.candidate || !a.answer {
		return // not armed for it, or the reply is lost
	}
	a.commitLocked(context.Background())
	reply := core.CommandReply{Verb: core.VerbUpgradeStop, ID: req.ID, UpgradeStop: &core.UpgradeStopResult{
		Attempt: req.UpgradeStop.Attempt, CommittedTo: a.version, ExitingVersion: a.version}}
	if b, err := reply.Encode(); err == nil {
		_ = msg.Respond(b)
	}
}

// commitLocked: the old agent exits, the candidate becomes the agent.
func (a *fakeAgent) commitLocked(ctx context.Context) {
	from := a.version
	to := a.target
	a.version = to
	a.putStatus(ctx, core.UpgradeStatus{Attempt: a.candidate, Phase: core.UpgradeCommitted, FromVersion: from,
		TargetVersion: &to, RunningVersion: to})
	a.candidate = 0
}

// commit finishes a held attempt as if the lost stop had been acted upon.
func (a *fakeAgent) commit() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.commitLocked(suiteCtx)
}
