package runcore

import (
	"bytes"
	"container/heap"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

// Machine is the operator runner's state machine. It is not safe for
// concurrent use: one goroutine (or the simulator's kernel) steps it.
type Machine struct {
	cfg  Config
	op   *opcore.Operator
	rng  *rand.Rand
	now  time.Time
	out  []Action
	feed []opcore.Input // inputs produced while carrying out effects

	connected  bool
	everUp     bool
	started    bool
	buckets    map[string]*bucketState
	allBuckets []string // every bucket opened: the watched ones first
	tok        uint64

	outbox   map[kvKey]*outItem
	ready    []kvKey // FIFO of items to write or reconcile
	inflight map[uint64]kvKey
	gets     map[uint64]kvKey

	objs       map[objKey]*objQueue // kept once made: one per object written
	objReady   []objKey
	objTok     map[uint64]objKey
	objPending int

	cmds map[uint64]opcore.SendCommand

	timers  timerHeap
	tickDue time.Time
	wakeAt  time.Time
	armed   time.Time

	st Status
}

type kvKey struct{ bucket, key string }

type bucketState struct {
	name     string
	watched  bool
	ready    bool // opened
	opening  bool
	retryAt  time.Time // open or watch back-off
	failures int

	gen      uint64 // current watch generation (0: none)
	watching bool   // a watch of gen exists (created or being created)
	lastRev  uint64
	replayed bool // KVReplayed delivered to the core
	wfail    int
}

type outItem struct {
	want     []byte
	wantDel  bool
	sent     []byte
	sentDel  bool
	hasSent  bool
	dirty    bool // want differs from what the in-flight operation concerns
	queued   bool // in m.ready
	busy     bool // a Write or Get is in flight
	check    bool // the next operation is a reconciling Get
	retryAt  time.Time
	failures int
}

type objItem struct {
	eff    opcore.Effect
	status bool // a status patch: replaced by a newer one while queued
	guards []opcore.SendCommand
}

type objQueue struct {
	items  []objItem
	cur    objItem
	busy   bool // cur is being written
	queued bool
}

// objKey names an object: a kind and a name.
type objKey struct {
	kind uint8 // 1 Deployment, 2 Device, 3 AgentRollout, 0 other (name has "Kind/")
	name string
}

func (k objKey) String() string {
	switch k.kind {
	case 1:
		return opcore.KindDeployment + "/" + k.name
	case 2:
		return opcore.KindDevice + "/" + k.name
	case 3:
		return opcore.KindAgentRollout + "/" + k.name
	}
	return k.name
}

// New builds a machine; deliver Start first.
func New(cfg Config) *Machine {
	cfg = cfg.WithDefaults()
	m := &Machine{cfg: cfg, op: opcore.New(cfg.Core), rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		buckets: map[string]*bucketState{}, outbox: map[kvKey]*outItem{}, inflight: map[uint64]kvKey{},
		gets: map[uint64]kvKey{}, objs: map[objKey]*objQueue{}, objTok: map[uint64]objKey{},
		cmds: map[uint64]opcore.SendCommand{}}
	for _, b := range cfg.Buckets {
		if m.buckets[b] == nil {
			m.buckets[b] = &bucketState{name: b, watched: true}
			m.allBuckets = append(m.allBuckets, b)
		}
	}
	for _, b := range core.Buckets {
		if m.buckets[b] == nil {
			m.buckets[b] = &bucketState{name: b}
			m.allBuckets = append(m.allBuckets, b)
		}
	}
	return m
}

// Core is the decision core (read-only use: accessors such as Phase,
// DeploymentStatus, DeviceUpgrade).
func (m *Machine) Core() *opcore.Operator { return m.op }

// LastRevision is the last revision of bucket delivered to the core.
func (m *Machine) LastRevision(bucket string) uint64 {
	if b := m.buckets[bucket]; b != nil {
		return b.lastRev
	}
	return 0
}

// Status reports the NATS side's state for readiness and metrics.
func (m *Machine) Status() Status {
	s := m.st
	s.Connected = m.connected
	s.BucketsReady = m.bucketsReady()
	s.Converged = m.op.Phase() == opcore.Converged
	s.OutboxDepth = len(m.outbox)
	s.WritesInFlight = len(m.inflight) + len(m.gets)
	s.ObjectBacklog = m.objPending
	s.Commands = len(m.cmds)
	s.WatchesActive = 0
	for _, b := range m.buckets {
		if b.watching {
			s.WatchesActive++
		}
	}
	return s
}

// Step delivers one event and returns the actions to carry out, in order.
// The returned slice is reused by the next Step: carry the actions out (or
// copy them) first.
func (m *Machine) Step(now time.Time, ev Event) []Action {
	m.now = now
	m.out = m.out[:0]
	switch ev := ev.(type) {
	case Start:
		if !m.started {
			m.started = true
			m.tickDue = now.Add(m.cfg.Core.TickInterval)
		}
	case Connected:
		m.onConnected()
	case Disconnected:
		if m.connected {
			m.log(slog.LevelWarn, "NATS disconnected; writes wait in the outbox", "err", ev.Err)
		}
		m.connected = false
	case BucketOpened:
		m.onBucketOpened(ev)
	case WatchEntry:
		m.onWatchEntry(ev)
	case WatchReplayed:
		if b := m.buckets[ev.Bucket]; b != nil && b.gen == ev.Gen && b.watching {
			b.wfail = 0
			if !b.replayed {
				b.replayed = true
				m.input(opcore.KVReplayed{Bucket: b.name})
			}
		}
	case WatchFailed:
		m.onWatchFailed(ev)
	case WriteDone:
		m.onWriteDone(ev)
	case GetDone:
		m.onGetDone(ev)
	case ReplyDone:
		m.onReply(ev)
	case Object:
		m.input(ev.In)
	case ObjectDone:
		m.onObjectDone(ev)
	case TimerFired:
		m.onTimer()
	}
	m.drain()
	m.pump()
	m.arm()
	return m.out
}

// ---- core ------------------------------------------------------------------

// input steps the core and carries out its effects; inputs produced on the
// way are delivered after.
func (m *Machine) input(in opcore.Input) {
	m.feed = append(m.feed, in)
	m.drain()
}

func (m *Machine) drain() {
	for i := 0; i < len(m.feed); i++ {
		in := m.feed[i]
		effs := m.op.Step(m.now, in)
		if m.cfg.Observe != nil {
			m.cfg.Observe(m.now, in, effs)
		}
		m.effects(effs)
	}
	clear(m.feed)
	m.feed = m.feed[:0]
}

func (m *Machine) effects(effs []opcore.Effect) {
	for i := 0; i < len(effs); i++ {
		switch e := effs[i].(type) {
		case opcore.PutKV:
			m.enqueue(e.Bucket, e.Key, e.Value, false)
		case opcore.DeleteKV:
			m.enqueue(e.Bucket, e.Key, nil, true)
		case opcore.SendCommand:
			m.send(e)
		case opcore.WakeAt:
			m.wakeAt = e.At
		case opcore.PatchDeviceStatus:
			// A stop goes out only once the StopSentAttempt that guards it
			// is durable: a restarted operator would send it again.
			if i+1 < len(effs) {
				if sc, ok := effs[i+1].(opcore.SendCommand); ok && sc.Device == e.Name &&
					sc.Request.Verb == core.VerbUpgradeStop {
					m.object(e, &sc)
					i++
					continue
				}
			}
			m.object(e, nil)
		case opcore.Notice:
			if e.Kind == "" {
				lvl := slog.LevelInfo
				if e.Warning {
					lvl = slog.LevelWarn
				}
				m.log(lvl, e.Message, "reason", e.Reason)
				continue
			}
			m.object(e, nil)
		default:
			m.object(e, nil)
		}
	}
}

func (m *Machine) log(lvl slog.Level, msg string, args ...any) {
	m.out = append(m.out, Log{Level: lvl, Msg: msg, Args: args})
}

func (m *Machine) token() uint64 { m.tok++; return m.tok }

// ---- connection, buckets, watches -----------------------------------------

func (m *Machine) onConnected() {
	if m.connected {
		return
	}
	reconnect := m.everUp
	m.connected, m.everUp = true, true
	if reconnect {
		m.log(slog.LevelInfo, "NATS reconnected; recreating watches")
	} else {
		m.log(slog.LevelInfo, "NATS connected")
	}
	for _, name := range m.allBuckets {
		b := m.buckets[name]
		if !b.ready {
			if !b.opening {
				m.open(b)
			}
			continue
		}
		// After a server restart an existing watch stays quiet until it is
		// rebuilt: recreate it from the last revision seen.
		if b.watched && (b.watching || !b.retryAt.IsZero()) {
			m.st.WatchRestarts++
			m.watch(b)
		}
	}
}

func (m *Machine) open(b *bucketState) {
	b.opening = true
	b.retryAt = time.Time{}
	m.out = append(m.out, OpenBucket{Bucket: b.name, Create: m.cfg.CreateBuckets, Timeout: m.cfg.WatchTimeout})
}

func (m *Machine) onBucketOpened(ev BucketOpened) {
	b := m.buckets[ev.Bucket]
	if b == nil || !b.opening {
		return
	}
	b.opening = false
	if ev.Err != "" {
		b.failures++
		b.retryAt = m.now.Add(m.backoff(b.failures))
		m.timer(b.retryAt, timerBucket, b.name)
		m.log(slog.LevelWarn, "open KV bucket failed; retrying", "bucket", b.name, "err", ev.Err, "retryAt", b.retryAt)
		return
	}
	b.failures, b.ready = 0, true
	if b.watched {
		m.watch(b)
	}
}

// watch (re)creates b's watch under a new generation.
func (m *Machine) watch(b *bucketState) {
	if b.watching {
		m.out = append(m.out, StopWatch{Bucket: b.name, Gen: b.gen})
	}
	b.gen++
	b.watching = true
	b.retryAt = time.Time{}
	from := uint64(0)
	if b.lastRev > 0 {
		from = b.lastRev + 1
	}
	m.out = append(m.out, CreateWatch{Bucket: b.name, Gen: b.gen, From: from, Timeout: m.cfg.WatchTimeout})
}

// WouldDeliver reports whether an entry of watch gen of bucket at revision
// rev would reach the core (it is of the current watch and newer than every
// revision delivered before: a recreated watch replays from where it
// resumed). Observers (the simulator's checker) ask before stepping it.
func (m *Machine) WouldDeliver(bucket string, gen, rev uint64) bool {
	b := m.buckets[bucket]
	return b != nil && b.watched && gen == b.gen && b.watching && rev > b.lastRev
}

func (m *Machine) onWatchEntry(ev WatchEntry) {
	if !m.WouldDeliver(ev.Bucket, ev.Gen, ev.Revision) {
		return
	}
	b := m.buckets[ev.Bucket]
	b.lastRev = ev.Revision
	if ev.Delete {
		m.input(opcore.KVDelete{Bucket: b.name, Key: ev.Key, Revision: ev.Revision})
	} else {
		m.input(opcore.KVPut{Bucket: b.name, Key: ev.Key, Value: ev.Value, Revision: ev.Revision})
	}
}

func (m *Machine) onWatchFailed(ev WatchFailed) {
	b := m.buckets[ev.Bucket]
	if b == nil || ev.Gen != b.gen || !b.watching {
		return
	}
	m.out = append(m.out, StopWatch{Bucket: b.name, Gen: b.gen})
	b.watching = false
	b.wfail++
	b.retryAt = m.now.Add(m.backoff(b.wfail))
	m.timer(b.retryAt, timerWatch, b.name)
	m.log(slog.LevelWarn, "KV watch failed; recreating", "bucket", b.name, "err", ev.Err, "retryAt", b.retryAt)
}

func (m *Machine) bucketsReady() bool {
	for _, b := range m.buckets {
		if !b.ready {
			return false
		}
	}
	return true
}

// ---- KV outbox ---------------------------------------------------------

func (m *Machine) enqueue(bucket, key string, value []byte, del bool) {
	k := kvKey{bucket, key}
	it := m.outbox[k]
	if it == nil {
		if len(m.outbox) >= m.cfg.MaxOutbox {
			m.st.OutboxRefused++
			m.feed = append(m.feed, opcore.KVWriteFailed{Bucket: bucket, Key: key, Delete: del, Err: "outbox full"})
			return
		}
		it = &outItem{}
		m.outbox[k] = it
	}
	it.want, it.wantDel = value, del
	if it.busy || it.check {
		it.dirty = true
		return
	}
	if it.retryAt.IsZero() {
		m.ready1(k, it)
	}
}

func (m *Machine) ready1(k kvKey, it *outItem) {
	it.retryAt = time.Time{}
	if !it.queued {
		it.queued = true
		m.ready = append(m.ready, k)
	}
}

// pump issues queued writes and Gets up to the in-flight bound, and queued
// object writes up to theirs.
func (m *Machine) pump() {
	if m.connected && m.bucketsReady() {
		for len(m.ready) > 0 && len(m.inflight)+len(m.gets) < m.cfg.MaxWritesInFlight {
			k := m.ready[0]
			m.ready = m.ready[1:]
			it := m.outbox[k]
			if it == nil {
				continue
			}
			it.queued = false
			it.busy = true
			t := m.token()
			if it.check {
				m.gets[t] = k
				m.out = append(m.out, Get{Token: t, Bucket: k.bucket, Key: k.key, Timeout: m.cfg.WriteTimeout})
				continue
			}
			it.sent, it.sentDel, it.hasSent, it.dirty = it.want, it.wantDel, true, false
			m.inflight[t] = k
			m.out = append(m.out, Write{Token: t, Bucket: k.bucket, Key: k.key, Value: it.want, Delete: it.wantDel,
				Timeout: m.cfg.WriteTimeout})
		}
	}
	for len(m.objReady) > 0 && len(m.objTok) < m.cfg.ObjectWriters {
		key := m.objReady[0]
		m.objReady = m.objReady[1:]
		q := m.objs[key]
		q.queued = false
		q.cur, q.busy = q.items[0], true
		q.items[0] = objItem{}
		q.items = q.items[1:]
		if len(q.items) == 0 {
			q.items = q.items[:0:0]
		}
		t := m.token()
		m.objTok[t] = key
		m.out = append(m.out, ApplyObject{Token: t, Effect: q.cur.eff})
	}
}

func (m *Machine) onWriteDone(ev WriteDone) {
	k, ok := m.inflight[ev.Token]
	if !ok {
		return
	}
	delete(m.inflight, ev.Token)
	it := m.outbox[k]
	it.busy = false
	switch ev.Outcome {
	case OK:
		m.settled(k, it)
	case Permanent:
		m.st.WritesFailed++
		m.log(slog.LevelError, "KV write failed for good", "bucket", k.bucket, "key", k.key, "err", ev.Err)
		m.feed = append(m.feed, opcore.KVWriteFailed{Bucket: k.bucket, Key: k.key, Delete: it.sentDel, Err: ev.Err})
		it.hasSent = false
		m.settled(k, it)
	case Failed:
		m.log(slog.LevelWarn, "KV write failed; retrying", "bucket", k.bucket, "key", k.key, "err", ev.Err)
		m.retry(k, it)
	default: // Uncertain: it may have landed; ask KV before anything else
		m.log(slog.LevelWarn, "KV write timed out; checking whether it landed", "bucket", k.bucket, "key", k.key, "err", ev.Err)
		m.st.Reconciles++
		it.check = true
		m.ready1(k, it)
	}
}

// settled: the in-flight operation of k is over; write the newer value if
// one came meanwhile, else forget the key.
func (m *Machine) settled(k kvKey, it *outItem) {
	it.failures = 0
	it.check = false
	if it.dirty {
		m.ready1(k, it)
		return
	}
	delete(m.outbox, k)
}

func (m *Machine) retry(k kvKey, it *outItem) {
	m.st.WriteRetries++
	it.failures++
	it.retryAt = m.now.Add(m.backoff(it.failures))
	m.timer(it.retryAt, timerWrite, k.bucket+"\x00"+k.key)
}

func (m *Machine) onGetDone(ev GetDone) {
	k, ok := m.gets[ev.Token]
	if !ok {
		return
	}
	delete(m.gets, ev.Token)
	it := m.outbox[k]
	it.busy = false
	var landed bool
	switch ev.Outcome {
	case OK:
		landed = !it.sentDel && bytes.Equal(ev.Value, it.sent)
	case NotFound:
		landed = it.sentDel
	default:
		m.log(slog.LevelWarn, "KV get failed; retrying", "bucket", k.bucket, "key", k.key, "err", ev.Err)
		it.failures++
		it.retryAt = m.now.Add(m.backoff(it.failures))
		m.timer(it.retryAt, timerWrite, k.bucket+"\x00"+k.key)
		return
	}
	it.check = false
	if landed {
		m.st.ReconcileLand++
		m.settled(k, it)
		return
	}
	// Not landed: write the newest value again (a newer value replaces it).
	m.st.WriteRetries++
	m.ready1(k, it)
}

// ---- commands ------------------------------------------------------------

func (m *Machine) send(sc opcore.SendCommand) {
	body, err := sc.Request.Encode()
	if err == nil {
		err = core.ValidateDeviceName(sc.Device)
	}
	if err != nil {
		m.feed = append(m.feed, opcore.CommandResult{Device: sc.Device, Verb: sc.Request.Verb, ID: sc.Request.ID,
			Attempt: sc.Attempt, Code: core.ErrCodeInternal, NotSent: true, Message: "not sent: " + err.Error()})
		return
	}
	t := m.token()
	m.cmds[t] = sc
	m.out = append(m.out, Request{Token: t, Device: sc.Device, Verb: sc.Request.Verb, Attempt: sc.Attempt,
		Subject: core.CommandSubject(sc.Device, sc.Request.Verb), Data: body, Timeout: m.cfg.CommandTimeout})
}

func (m *Machine) onReply(ev ReplyDone) {
	sc, ok := m.cmds[ev.Token]
	if !ok {
		return
	}
	delete(m.cmds, ev.Token)
	res := opcore.CommandResult{Device: sc.Device, Verb: sc.Request.Verb, ID: sc.Request.ID, Attempt: sc.Attempt}
	switch ev.Outcome {
	case OK:
		_, err := DecodeReply(sc.Request, ev.Data)
		res.Code, res.Message = ErrorCode(err)
	case NoResponders:
		res.Code, res.Message = core.ErrCodeOffline, "no agent of device "+sc.Device+" is subscribed"
	case Uncertain:
		res.Code, res.Message = core.ErrCodeTimeout, "no reply from device "+sc.Device+" within "+m.cfg.CommandTimeout.String()
	default:
		res.Code, res.Message = core.ErrCodeInternal, ev.Err
	}
	if res.Code != "" {
		m.log(slog.LevelWarn, "command failed", "device", sc.Device, "verb", sc.Request.Verb, "attempt", sc.Attempt,
			"code", res.Code, "err", res.Message)
	} else {
		m.log(slog.LevelInfo, "command ok", "device", sc.Device, "verb", sc.Request.Verb, "attempt", sc.Attempt)
	}
	m.input(res)
}

// ---- object writes -------------------------------------------------------

// objectKey names the object an effect writes; status patches of one object
// replace each other while queued, other writes never do.
func objectKey(e opcore.Effect) (key objKey, status bool) {
	switch e := e.(type) {
	case opcore.PatchDeploymentStatus:
		return objKey{1, e.Name}, true
	case opcore.PatchDeviceStatus:
		return objKey{2, e.Name}, true
	case opcore.PatchAgentRolloutStatus:
		return objKey{3, e.Name}, true
	case opcore.CreateDevice:
		return objKey{2, e.Name}, false
	case opcore.PatchDeviceLabels:
		return objKey{2, e.Name}, false
	case opcore.RemoveFinalizer:
		return kindKey(e.Kind, e.Name), false
	case opcore.Notice:
		return kindKey(e.Kind, e.Name), false
	}
	return objKey{0, "?"}, false
}

func kindKey(kind, name string) objKey {
	switch kind {
	case opcore.KindDeployment:
		return objKey{1, name}
	case opcore.KindDevice:
		return objKey{2, name}
	case opcore.KindAgentRollout:
		return objKey{3, name}
	}
	return objKey{0, kind + "/" + name}
}

func (m *Machine) object(e opcore.Effect, guard *opcore.SendCommand) {
	key, status := objectKey(e)
	q := m.objs[key]
	if q == nil {
		q = &objQueue{}
		m.objs[key] = q
	}
	i := -1
	if status {
		for j := range q.items {
			if q.items[j].status {
				i = j
				break
			}
		}
	}
	if i >= 0 {
		q.items[i].eff = e // the newest status wins; its guards still wait for it
	} else {
		q.items = append(q.items, objItem{eff: e, status: status})
		i = len(q.items) - 1
		m.objPending++
	}
	if guard != nil {
		q.items[i].guards = append(q.items[i].guards, *guard)
	}
	if !q.busy && !q.queued {
		q.queued = true
		m.objReady = append(m.objReady, key)
	}
}

func (m *Machine) onObjectDone(ev ObjectDone) {
	key, ok := m.objTok[ev.Token]
	if !ok {
		return
	}
	delete(m.objTok, ev.Token)
	q := m.objs[key]
	it := q.cur
	q.cur, q.busy = objItem{}, false
	m.objPending--
	if ev.Err != "" {
		m.st.ObjectFailures++
		if n, ok := it.eff.(opcore.Notice); ok {
			m.log(slog.LevelWarn, "record event failed", "kind", n.Kind, "name", n.Name, "reason", n.Reason, "err", ev.Err)
		} else {
			m.log(slog.LevelError, "object write failed", "object", key.String(), "err", ev.Err)
		}
	}
	for _, sc := range it.guards {
		if ev.Err != "" {
			m.log(slog.LevelError, "could not record stopSentAttempt; upgrade-stop not sent", "device", sc.Device, "err", ev.Err)
			m.feed = append(m.feed, opcore.CommandResult{Device: sc.Device, Verb: sc.Request.Verb, ID: sc.Request.ID,
				Attempt: sc.Attempt, Code: core.ErrCodeInternal, NotSent: true,
				Message: "not sent: could not record stopSentAttempt: " + ev.Err})
			continue
		}
		m.send(sc)
	}
	if len(q.items) > 0 {
		q.queued = true
		m.objReady = append(m.objReady, key)
	}
}

// ---- timers ----------------------------------------------------------------

const (
	timerBucket uint8 = iota
	timerWatch
	timerWrite
)

type timerItem struct {
	at   time.Time
	kind uint8
	name string
	seq  uint64
}

type timerHeap []timerItem

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timerItem)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (m *Machine) timer(at time.Time, kind uint8, name string) {
	heap.Push(&m.timers, timerItem{at: at, kind: kind, name: name, seq: m.token()})
}

// backoff is RetryMin·2^(n-1), at most RetryMax, minus up to 20 % jitter.
func (m *Machine) backoff(n int) time.Duration {
	d := m.cfg.RetryMin
	for i := 1; i < n && d < m.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, m.cfg.RetryMax)
	return d - time.Duration(m.rng.Int64N(int64(d)/5+1))
}

func (m *Machine) onTimer() {
	for len(m.timers) > 0 && !m.timers[0].at.After(m.now) {
		t := heap.Pop(&m.timers).(timerItem)
		switch t.kind {
		case timerBucket:
			b := m.buckets[t.name]
			if b.ready || b.opening || !b.retryAt.Equal(t.at) {
				continue
			}
			b.retryAt = time.Time{}
			if m.connected {
				m.open(b)
			}
		case timerWatch:
			b := m.buckets[t.name]
			if b.watching || !b.retryAt.Equal(t.at) {
				continue
			}
			if m.connected {
				m.st.WatchRestarts++
				m.watch(b)
			} // else Connected recreates it
		case timerWrite:
			bk, key, _ := cut(t.name)
			k := kvKey{bk, key}
			it := m.outbox[k]
			if it == nil || it.busy || !it.retryAt.Equal(t.at) {
				continue
			}
			m.ready1(k, it)
		}
	}
	due := m.tickDue
	if !m.wakeAt.IsZero() && m.wakeAt.Before(due) {
		due = m.wakeAt
	}
	if m.started && !m.now.Before(due) {
		m.tickDue = m.now.Add(m.cfg.Core.TickInterval)
		if !m.wakeAt.After(m.now) {
			m.wakeAt = time.Time{}
		}
		m.input(opcore.Tick{})
	}
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func (m *Machine) arm() {
	if !m.started {
		return
	}
	at := m.tickDue
	if !m.wakeAt.IsZero() && m.wakeAt.Before(at) {
		at = m.wakeAt
	}
	if len(m.timers) > 0 && m.timers[0].at.Before(at) {
		at = m.timers[0].at
	}
	if !at.Equal(m.armed) {
		m.armed = at
		m.out = append(m.out, ArmTimer{At: at})
	}
}
