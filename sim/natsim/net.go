package natsim

import (
	"errors"
	"time"

	"github.com/flotilla-fleet/flotilla/sim/kernel"
)

// Fate is what the network does to one message on one hop.
type Fate struct {
	Delay time.Duration // latency of this hop
	Drop  bool
	Dup   bool
}

// Dir is the direction of a hop, seen from the client.
type Dir uint8

const (
	ToServer Dir = iota
	ToClient
	// AckToClient is the acknowledgement of a Conn.Write coming back from
	// JetStream (a reply on the client's inbox).
	AckToClient
)

// Policy decides each hop's fate. The world implements it from the
// scenario's latency model and network faults (drawing from its own stream).
type Policy interface {
	Fate(c *Conn, dir Dir, stream bool) Fate
}

// Client is a connection's owner: a device process or the operator.
type Client interface {
	// WatchEntry delivers one entry of watch id; e == nil marks the end of
	// the initial replay of a new watch.
	WatchEntry(c *Conn, id int, e *Entry)
	// Message delivers a message on a subscription id.
	Message(c *Conn, id int, m *Msg)
	// Reply answers request token (Conn.RequestBytes); err is
	// ErrNoResponders, ErrTimeout, ErrMaxPayload, ErrBufferFull or
	// ErrConnClosed when no reply came.
	Reply(c *Conn, token uint64, m *Msg, err error)
	// ConnState reports connectivity changes (after the change).
	ConnState(c *Conn, up bool)
}

// Request errors, as nats.go reports them.
var (
	ErrNoResponders = errors.New("nats: no responders available for request")
	ErrTimeout      = errors.New("nats: timeout")
	// ErrConnClosed: the connection was closed.
	ErrConnClosed = errors.New("nats: connection closed")
)

// Event kinds Net schedules on itself.
const (
	evWatchDeliver uint16 = iota + 1
	evMsgDeliver
	evReplyArrive  // reply message reaches the server
	evReplyDeliver // reply (or error) reaches the requester
	evReqTimeout
	evReqArrive
)

// Stats counts what the network did, for the report.
type Stats struct {
	Dropped, Duplicated, Queued, Resumed, NoResponders, Timeouts uint64
}

// Net carries operations between Conns and the Server in virtual time.
type Net struct {
	K      *kernel.Kernel
	S      *Server
	Policy Policy
	// ResetDelay is how long an ordered consumer takes to notice a gap (a
	// dropped delivery) and re-deliver from the last sequence it saw.
	ResetDelay time.Duration
	// WatchRebuildDelay is nats.go's ordered-consumer activity check period
	// for v2 watches (default DefaultWatchRebuildDelay): a watch whose
	// consumer vanished with a server restart is rebuilt at the first check
	// that saw no message or heartbeat for a whole period.
	WatchRebuildDelay time.Duration

	serverUp  bool
	srvEpoch  uint32        // bumped when the server stops: consumers are gone
	stoppedAt time.Duration // when the server last stopped
	opts      []*connOpts   // distinct options of dialed connections
	conns     []*Conn
	reqSeq    uint64
	pending   map[uint64]*pendingReq
	Stats     Stats
}

type pendingReq struct {
	c     *Conn
	token uint64
	done  bool // the reply or the timeout reached the client
}

// NewNet returns a network around a server.
func NewNet(k *kernel.Kernel, s *Server, p Policy) *Net {
	return &Net{K: k, S: s, Policy: p, ResetDelay: 2 * time.Second, serverUp: true, pending: map[uint64]*pendingReq{}}
}

// ServerUp reports whether the server is running.
func (n *Net) ServerUp() bool { return n.serverUp }

// SetServerUp starts or stops the server (an outage). JetStream data is
// durable: buckets survive; connections drop and later reconnect.
func (n *Net) SetServerUp(up bool) {
	if n.serverUp == up {
		return
	}
	n.serverUp = up
	if !up {
		n.srvEpoch++
		n.stoppedAt = n.K.Now()
	}
	for _, c := range n.conns {
		if c != nil {
			c.refresh()
		}
	}
}

// Conn is one client connection (Net.Dial), alive for the life of the
// client process.
type Conn struct {
	net    *Net
	idx    int
	client Client
	Tag    any

	linkUp    bool // partition: false cuts both ways
	blockOut  bool // asymmetric partition: client→server lost
	blockIn   bool // asymmetric partition: server→client lost
	up        bool // connected (server up, link up, reconnected)
	closed    bool
	reconnect bool // a reconnect event is scheduled
	dead      bool // the link black-holes everything (dead link)
	pingArmed bool // a missed-pings detection is scheduled
	epoch     uint32
	pingGen   uint32        // invalidates an armed detection
	srvEpoch  uint32        // the server epoch it connected in
	lastOut   time.Duration // FIFO: last scheduled arrival at the server
	watches   []*connWatch
	subs      []*connSub
	hints     []keyHint

	o     *connOpts
	phase time.Duration // connected: since when (ping phase); down: since when (reconnect phase)
	rb    *reconnBuf    // buffered while reconnecting
}

// keyHint remembers where one of a connection's keys lives on the server.
// A device writes the same few keys all its life, and finding them by name
// in buckets of 100k keys was a tenth of a large run's time.
type keyHint struct {
	bucket, key string
	b           *Bucket
	l           *keyLog
}

// maxHints bounds a connection's hints: enough for a device's keys
// (heartbeat, info, upgrade status, a state per deployment); a writer of
// many keys (the operator) cycles through them and looks keys up as before.
const maxHints = 4

// store applies a write that reached the server.
func (c *Conn) store(now time.Duration, e *Entry) error {
	for i := range c.hints {
		h := &c.hints[i]
		if h.key == e.Key && h.bucket == e.Bucket {
			_, err := h.b.store(now, e, nil, h.l)
			return err
		}
	}
	b, err := c.net.S.Bucket(e.Bucket)
	if err != nil {
		return err
	}
	l, err := b.store(now, e, nil, nil)
	if err != nil {
		return err
	}
	h := keyHint{bucket: e.Bucket, key: e.Key, b: b, l: l}
	if c.hints == nil {
		c.hints = make([]keyHint, 0, maxHints)
	}
	if len(c.hints) < maxHints {
		c.hints = append(c.hints, h)
	} else {
		copy(c.hints, c.hints[1:])
		c.hints[maxHints-1] = h
	}
	return nil
}

type connWatch struct {
	c       *Conn
	id      int
	bucket  string
	filter  string
	from    uint64
	w       *Watcher
	lastRev uint64 // last revision delivered to the client
	lastAt  time.Duration
	q       []*Entry // scheduled deliveries, FIFO
	qh      int32
	gen     uint32 // bumped when the watch restarts: older deliveries are discarded
	mode    WatchMode

	initDone bool          // the end-of-initial-replay marker reached the client
	lost     bool          // a delivery was lost on a silent link
	srvEpoch uint32        // the server epoch its consumer was made in
	created  time.Duration // when the watch was made (activity-check phase)
	heard    time.Duration // last message or heartbeat before its consumer vanished (0: unknown)
	op       *v2op         // creation under way
}

func (w *connWatch) enqueue(e *Entry) { w.q = append(w.q, e) }

func (w *connWatch) dequeue() *Entry {
	e := w.q[w.qh]
	w.q[w.qh] = nil
	w.qh++
	if int(w.qh) == len(w.q) {
		w.q, w.qh = w.q[:0], 0
	}
	return e
}

func (w *connWatch) stop() {
	if w.w != nil {
		w.w.Stop()
		w.w = nil
	}
	w.gen++
}

type connSub struct {
	c       *Conn
	id      int
	subject string
	sub     *Sub
}

// Close ends the connection (the process exited or died): its watches and
// subscriptions go away and the reconnect buffer is lost.
func (c *Conn) Close() {
	if c.closed {
		return
	}
	c.closed = true
	c.setDown()
	c.rb = nil
	n := c.net
	last := len(n.conns) - 1
	n.conns[c.idx] = n.conns[last]
	n.conns[c.idx].idx = c.idx
	n.conns[last] = nil
	n.conns = n.conns[:last]
}

// Up reports whether the connection is connected.
func (c *Conn) Up() bool { return c.up }

// Closed reports whether Close was called.
func (c *Conn) Closed() bool { return c.closed }

// SetLink sets the partition state of this client's link: up=false cuts both
// directions; blockOut / blockIn cut one direction only.
func (c *Conn) SetLink(up, blockOut, blockIn bool) {
	c.linkUp, c.blockOut, c.blockIn = up, blockOut, blockIn
	c.refresh()
}

func (c *Conn) setDown() {
	if !c.up {
		return
	}
	c.up = false
	c.epoch++
	for _, w := range c.watches {
		if w.w != nil && !c.net.serverUp {
			w.heard = w.lastActivity(c.net.K.Now())
		}
		w.stop()
	}
	for _, s := range c.subs {
		if s.sub != nil {
			c.net.S.Unsubscribe(s.sub)
			s.sub = nil
		}
	}
}

// ---- watch deliveries ---------------------------------------------------------------

// WatchEntry implements WatchSink: the server stored a matching entry.
func (w *connWatch) WatchEntry(_ *Watcher, e *Entry) { w.schedule(e) }

func (w *connWatch) schedule(e *Entry) {
	c := w.c
	n := c.net
	if c.blockIn || c.dead {
		w.lost = true
		return // lost; resumed from lastRev on heal
	}
	f := n.Policy.Fate(c, ToClient, true)
	if f.Drop {
		n.Stats.Dropped++
		f.Delay += n.ResetDelay
	}
	at := n.K.Now() + f.Delay
	if at < w.lastAt {
		at = w.lastAt
	}
	w.lastAt = at
	n.K.At(at, kernel.Event{Target: n, Kind: evWatchDeliver, P: w, A: uint64(w.gen)})
	w.enqueue(e)
	// (An ordered consumer drops a duplicate: a watch never sees one.)
}

// ---- pub/sub and request/reply -------------------------------------------------------

// Subscribe registers interest; messages arrive via Client.Message with id.
func (c *Conn) Subscribe(id int, subject string) {
	s := &connSub{c: c, id: id, subject: subject}
	c.subs = append(c.subs, s)
	if c.up {
		s.sub = c.net.S.Subscribe(subject, s)
	}
}

// Deliver implements MsgSink.
func (s *connSub) Deliver(_ *Sub, m *Msg) {
	c := s.c
	n := c.net
	if c.blockIn || c.dead {
		return
	}
	f := n.Policy.Fate(c, ToClient, false)
	if f.Drop {
		n.Stats.Dropped++
		return
	}
	n.K.After(f.Delay, kernel.Event{Target: n, Kind: evMsgDeliver, P: &msgEv{s: s, m: m, epoch: c.epoch}})
	if f.Dup {
		n.Stats.Duplicated++
		n.K.After(f.Delay, kernel.Event{Target: n, Kind: evMsgDeliver, P: &msgEv{s: s, m: m, epoch: c.epoch}})
	}
}

type msgEv struct {
	s     *connSub
	m     *Msg
	epoch uint32
}

type replyEv struct {
	p     *pendingReq
	m     *Msg
	err   error
	epoch uint32 // the requester's connection the server sent it on
}

// Respond answers a request message received by this connection: buffered
// while reconnecting; fails with ErrMaxPayload, ErrBufferFull or
// ErrConnClosed as nats.go's does.
func (c *Conn) Respond(req *Msg, data []byte) error {
	if req.reqID == 0 {
		return nil
	}
	return c.publish2(&Msg{Subject: req.Reply, Data: data, reqID: req.reqID, reply: true})
}

// Publish sends a message without a reply, like Respond (buffered while
// reconnecting, errors as nats.go reports them).
func (c *Conn) Publish(subject string, data []byte) error {
	return c.publish2(&Msg{Subject: subject, Data: data})
}

// ---- event handling ---------------------------------------------------------------

// Handle implements kernel.Handler.
func (n *Net) Handle(k *kernel.Kernel, ev *kernel.Event) {
	if ev.Kind >= evWriteArrive {
		n.handle2(k, ev)
		return
	}
	switch ev.Kind {
	case evWatchDeliver:
		w := ev.P.(*connWatch)
		c := w.c
		e := w.dequeue()
		if c.closed || uint32(ev.A) != w.gen || !c.up {
			return
		}
		if e == nil {
			w.initDone = true
			c.client.WatchEntry(c, w.id, nil)
			return
		}
		if e.Rev <= w.lastRev {
			return // an ordered consumer delivers each revision once, in order
		}
		w.lastRev = e.Rev
		c.client.WatchEntry(c, w.id, e)
	case evMsgDeliver:
		me := ev.P.(*msgEv)
		c := me.s.c
		if c.closed || me.epoch != c.epoch || !c.up {
			return
		}
		c.client.Message(c, me.s.id, me.m)
	case evReqArrive:
		m := ev.P.(*Msg)
		if !n.serverUp {
			return
		}
		cnt := n.S.Publish(m)
		if cnt == 0 && m.reqID != 0 {
			if p := n.pending[m.reqID]; p != nil && !p.done {
				// Settled when delivered: the answer may still be lost.
				n.Stats.NoResponders++
				f := n.Policy.Fate(p.c, ToClient, false)
				n.K.After(f.Delay, kernel.Event{Target: n, Kind: evReplyDeliver, P: &replyEv{p: p, err: ErrNoResponders, epoch: p.c.epoch}})
			}
		}
	case evReplyArrive:
		m := ev.P.(*Msg)
		p := n.pending[m.reqID]
		if p == nil || p.done || !n.serverUp {
			return
		}
		if p.c.blockIn || p.c.dead || !p.c.up {
			return // nobody has the inbox subscribed now: lost
		}
		f := n.Policy.Fate(p.c, ToClient, false)
		if f.Drop {
			n.Stats.Dropped++
			return
		}
		n.K.After(f.Delay, kernel.Event{Target: n, Kind: evReplyDeliver, P: &replyEv{p: p, m: m, epoch: p.c.epoch}})
	case evReplyDeliver:
		r := ev.P.(*replyEv)
		p := r.p
		if p.done || p.c.closed || r.epoch != p.c.epoch || !p.c.up || p.c.silentIn() {
			return // settled already, or lost on the way back: the deadline reports it
		}
		p.done = true
		delete(n.pending, p.token)
		p.c.client.Reply(p.c, p.token, r.m, r.err)
	case evReqTimeout:
		p := n.pending[ev.A]
		if p == nil || p.done {
			return
		}
		p.done = true
		n.Stats.Timeouts++
		delete(n.pending, ev.A)
		if !p.c.closed {
			p.c.client.Reply(p.c, p.token, nil, ErrTimeout)
		}
	}
}
