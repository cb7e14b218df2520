// Package natsim is the simulator's NATS: JetStream-style KV buckets (per-key
// revisions, history, watch with replay and resume from a revision,
// delete/purge markers), pub/sub and request/reply with no-responders, and a
// network between clients and the server with latency, drop, duplicate,
// reorder, partitions and outages, all in virtual time.
//
// Server is the pure data part (what JetStream stores); Net carries
// operations between Conns and the Server through the kernel's heap.
//
// The client API is Net.Dial with the v2 calls (Write, Get, WatchFrom,
// StopWatch, RequestBytes, Publish, Respond), which behave as nats.go shows
// itself to a shell (see conn2.go): the network retries and resumes nothing
// for a client (ADR 0103).
package natsim

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Op is the operation an entry records, as in JetStream KV.
type Op uint8

const (
	OpPut Op = iota
	OpDelete
	OpPurge
)

func (o Op) String() string {
	switch o {
	case OpPut:
		return "PUT"
	case OpDelete:
		return "DEL"
	case OpPurge:
		return "PURGE"
	}
	return fmt.Sprintf("Op(%d)", o)
}

// Entry is one revision of one key. Value holds encoded bytes when the
// writer provides them; Obj the decoded value the writer put (the simulator
// passes typed values to spare an encode/decode per message). Readers must
// treat an Entry as immutable: it is shared by every watcher.
type Entry struct {
	Bucket string
	Key    string
	Rev    uint64
	Op     Op
	Value  []byte
	Obj    any
	At     time.Duration // virtual time the server stored it

	src   *Conn  // the writing connection while in flight
	epoch uint32 // its epoch when sent
	wf    uint8  // Conn.Write state (wDone, ...)
}

// Errors of the KV API; the real client has the same distinctions.
var (
	ErrBucketNotFound = errors.New("bucket not found")
	ErrKeyNotFound    = errors.New("key not found")
	ErrWrongLastRev   = errors.New("wrong last sequence")
	ErrKeyExists      = errors.New("key exists")
	ErrBadKey         = errors.New("invalid key")
)

// Bucket is one KV bucket: a stream whose sequence is the revision.
type Bucket struct {
	name    string
	history int
	rev     uint64
	keys    map[string]*keyLog
	// byToken lists the keys by their first token, so a watch on
	// "<device>.*" replays without scanning every key.
	byToken map[string][]string
	// watchers indexed by the literal first token of their filter; wild
	// holds filters whose first token is a wildcard.
	byFirst map[string][]*Watcher
	wild    []*Watcher
}

type keyLog struct {
	entries []*Entry // oldest first, at most history
}

func (l *keyLog) latest() *Entry { return l.entries[len(l.entries)-1] }

// Server holds buckets and subscriptions.
type Server struct {
	buckets map[string]*Bucket
	subs    subIndex
}

// NewServer returns an empty server.
func NewServer() *Server {
	return &Server{buckets: map[string]*Bucket{}, subs: subIndex{byFirst: map[string][]*Sub{}}}
}

// CreateBucket creates (or returns) a bucket keeping history revisions per
// key (1-64, as JetStream allows).
func (s *Server) CreateBucket(name string, history int) (*Bucket, error) {
	if history < 1 || history > 64 {
		return nil, fmt.Errorf("bucket %s: history must be 1-64, got %d", name, history)
	}
	if b, ok := s.buckets[name]; ok {
		return b, nil
	}
	b := &Bucket{name: name, history: history, keys: map[string]*keyLog{}, byFirst: map[string][]*Watcher{},
		byToken: map[string][]string{}}
	s.buckets[name] = b
	return b, nil
}

// Bucket returns a bucket by name.
func (s *Server) Bucket(name string) (*Bucket, error) {
	b, ok := s.buckets[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrBucketNotFound, name)
	}
	return b, nil
}

// Name is the bucket's name.
func (b *Bucket) Name() string { return b.name }

// Revision is the bucket's last assigned revision.
func (b *Bucket) Revision() uint64 { return b.rev }

// ValidKey reports whether key is a valid KV key: non-empty dot-separated
// tokens without wildcards or whitespace.
func ValidKey(key string) bool {
	if key == "" || key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return false
	}
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c == '*' || c == '>' || c <= ' ' || c == 0x7f:
			return false
		}
	}
	return true
}

// Store applies e (Op, Key, Value, Obj set by the caller) as the next
// revision and notifies watchers; it fills e.Bucket, e.Rev and e.At.
// expectRev, when not nil, is a compare-and-set on the key's last revision
// (0 = the key must not exist or be deleted).
func (b *Bucket) Store(now time.Duration, e *Entry, expectRev *uint64) error {
	_, err := b.store(now, e, expectRev, nil)
	return err
}

// store is Store with the key's log when the caller knows it (nil: look it
// up); it returns the log. Logs are never removed from a bucket, so a
// caller may keep one for the next write of the same key.
func (b *Bucket) store(now time.Duration, e *Entry, expectRev *uint64, l *keyLog) (*keyLog, error) {
	if l == nil {
		if !ValidKey(e.Key) {
			return nil, fmt.Errorf("%w %q", ErrBadKey, e.Key)
		}
		l = b.keys[e.Key]
	}
	if expectRev != nil {
		var last uint64
		if l != nil {
			le := l.latest()
			if le.Op == OpPut || *expectRev != 0 {
				last = le.Rev
			}
		}
		if last != *expectRev {
			if *expectRev == 0 {
				return l, fmt.Errorf("%w: %s", ErrKeyExists, e.Key)
			}
			return l, fmt.Errorf("%w: %s has revision %d, not %d", ErrWrongLastRev, e.Key, last, *expectRev)
		}
	}
	b.rev++
	e.Bucket, e.Rev, e.At = b.name, b.rev, now
	if l == nil {
		l = &keyLog{}
		b.keys[e.Key] = l
		t := firstToken(e.Key)
		b.byToken[t] = append(b.byToken[t], e.Key)
	}
	if e.Op == OpPurge {
		l.entries = append(l.entries[:0], e)
	} else {
		if len(l.entries) >= b.history {
			copy(l.entries, l.entries[1:])
			l.entries = l.entries[:len(l.entries)-1]
		}
		l.entries = append(l.entries, e)
	}
	b.notify(e)
	return l, nil
}

// Put stores a value and returns its revision.
func (b *Bucket) Put(now time.Duration, key string, value []byte, obj any) (uint64, error) {
	e := &Entry{Key: key, Op: OpPut, Value: value, Obj: obj}
	err := b.Store(now, e, nil)
	return e.Rev, err
}

// Get returns the latest entry of key; a deleted or purged key is
// ErrKeyNotFound.
func (b *Bucket) Get(key string) (*Entry, error) {
	l := b.keys[key]
	if l == nil || l.latest().Op != OpPut {
		return nil, fmt.Errorf("%w: %s/%s", ErrKeyNotFound, b.name, key)
	}
	return l.latest(), nil
}

// History returns the retained revisions of key, oldest first, including
// delete and purge markers.
func (b *Bucket) History(key string) ([]*Entry, error) {
	l := b.keys[key]
	if l == nil {
		return nil, fmt.Errorf("%w: %s/%s", ErrKeyNotFound, b.name, key)
	}
	return slices.Clone(l.entries), nil
}

// Keys returns the keys whose latest entry is a value, sorted.
func (b *Bucket) Keys() []string {
	out := make([]string, 0, len(b.keys))
	for k, l := range b.keys {
		if l.latest().Op == OpPut {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Len is the number of keys holding a value.
func (b *Bucket) Len() int {
	n := 0
	for _, l := range b.keys {
		if l.latest().Op == OpPut {
			n++
		}
	}
	return n
}

// ---- subjects and filters -----------------------------------------------------

// SubjectMatch reports whether subject matches filter with NATS wildcards:
// '*' one token, '>' one or more trailing tokens.
func SubjectMatch(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		if ft == ">" {
			return subject != ""
		}
		st, srest, smore := strings.Cut(subject, ".")
		if ft != "*" && ft != st {
			return false
		}
		if !fmore || !smore {
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}

func firstToken(s string) string {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return s[:i]
	}
	return s
}

func literalFirst(filter string) (string, bool) {
	t := firstToken(filter)
	return t, t != "*" && t != ">"
}

// ---- watch --------------------------------------------------------------------

// WatchSink receives a watcher's entries synchronously, at the server.
type WatchSink interface {
	WatchEntry(w *Watcher, e *Entry)
}

// Watcher is a live watch on a bucket.
type Watcher struct {
	b      *Bucket
	Filter string
	sink   WatchSink
	closed bool
	// Tag is the owner's; the server does not read it.
	Tag any
}

// WatchMode selects what a new watch delivers before live updates.
type WatchMode uint8

const (
	// WatchLast delivers the latest entry of every matching key (delete and
	// purge markers included), as nats.go's default Watch does.
	WatchLast WatchMode = iota
	// WatchAll delivers every retained entry (IncludeHistory).
	WatchAll
	// WatchFrom delivers every retained entry with revision >= From
	// (ResumeFromRevision).
	WatchFrom
	// WatchUpdates delivers only later changes (UpdatesOnly).
	WatchUpdates
)

// Watch registers a watcher and returns it with the initial entries, in
// revision order. Later changes go to sink as they are stored.
func (b *Bucket) Watch(filter string, mode WatchMode, from uint64, sink WatchSink) (*Watcher, []*Entry) {
	w := &Watcher{b: b, Filter: filter, sink: sink}
	var initial []*Entry
	if mode != WatchUpdates {
		initial = b.Initial(filter, mode, from)
	}
	if t, ok := literalFirst(filter); ok {
		b.byFirst[t] = append(b.byFirst[t], w)
	} else {
		b.wild = append(b.wild, w)
	}
	return w, initial
}

// Initial returns what a watch in mode would replay now, in revision order.
func (b *Bucket) Initial(filter string, mode WatchMode, from uint64) []*Entry {
	var out []*Entry
	collect := func(key string, l *keyLog) {
		if !SubjectMatch(filter, key) {
			return
		}
		switch mode {
		case WatchLast:
			out = append(out, l.latest())
		case WatchAll:
			out = append(out, l.entries...)
		case WatchFrom:
			for _, e := range l.entries {
				if e.Rev >= from {
					out = append(out, e)
				}
			}
		}
	}
	if t, ok := literalFirst(filter); ok {
		if !strings.ContainsAny(filter, "*>") {
			if l := b.keys[filter]; l != nil {
				collect(filter, l)
			}
		} else {
			for _, k := range b.byToken[t] {
				collect(k, b.keys[k])
			}
		}
	} else {
		for k, l := range b.keys {
			collect(k, l)
		}
	}
	slices.SortFunc(out, func(x, y *Entry) int {
		switch {
		case x.Rev < y.Rev:
			return -1
		case x.Rev > y.Rev:
			return 1
		}
		return 0
	})
	return out
}

// Stop ends the watch.
func (w *Watcher) Stop() {
	if w.closed {
		return
	}
	w.closed = true
	b := w.b
	if t, ok := literalFirst(w.Filter); ok {
		b.byFirst[t] = removePtr(b.byFirst[t], w)
		if len(b.byFirst[t]) == 0 {
			delete(b.byFirst, t)
		}
	} else {
		b.wild = removePtr(b.wild, w)
	}
}

func removePtr[T comparable](s []T, x T) []T {
	for i, v := range s {
		if v == x {
			return slices.Delete(s, i, i+1)
		}
	}
	return s
}

func (b *Bucket) notify(e *Entry) {
	for _, w := range b.byFirst[firstToken(e.Key)] {
		if SubjectMatch(w.Filter, e.Key) {
			w.sink.WatchEntry(w, e)
		}
	}
	for _, w := range b.wild {
		if SubjectMatch(w.Filter, e.Key) {
			w.sink.WatchEntry(w, e)
		}
	}
}

// ---- pub/sub --------------------------------------------------------------------

// Msg is a published message: bytes only, as on the wire (no Go values
// cross the simulated network).
type Msg struct {
	Subject string
	Reply   string
	Data    []byte
	// reqID links a request to its pending reply inside Net.
	reqID uint64
	reply bool // a Respond: goes to the requester, not to subscribers
}

// MsgSink receives a subscription's messages synchronously, at the server.
type MsgSink interface {
	Deliver(s *Sub, m *Msg)
}

// Sub is a subscription.
type Sub struct {
	Subject string
	sink    MsgSink
	closed  bool
	Tag     any
}

// subIndex files a subscription under its literal prefix: the first two
// tokens when both are literal (device-commands.<device>.>), else the first
// token, else among the wildcards. A publish looks at both prefixes of its
// subject, so 100k device subscriptions cost one map lookup, not a scan.
type subIndex struct {
	byFirst map[string][]*Sub
	wild    []*Sub
}

// subKey is where a subscription is filed ("" = wildcard list).
func subKey(filter string) string {
	t1, rest, more := strings.Cut(filter, ".")
	if t1 == "*" || t1 == ">" {
		return ""
	}
	if !more {
		return t1
	}
	t2, _, _ := strings.Cut(rest, ".")
	if t2 == "*" || t2 == ">" {
		return t1
	}
	return filter[:len(t1)+1+len(t2)]
}

// subjectKeys are the two index keys a subject can match.
func subjectKeys(subject string) (k1, k2 string) {
	t1, rest, more := strings.Cut(subject, ".")
	if !more {
		return t1, ""
	}
	t2, _, _ := strings.Cut(rest, ".")
	return t1, subject[:len(t1)+1+len(t2)]
}

// Subscribe registers interest in subject (wildcards allowed).
func (s *Server) Subscribe(subject string, sink MsgSink) *Sub {
	sub := &Sub{Subject: subject, sink: sink}
	if k := subKey(subject); k != "" {
		s.subs.byFirst[k] = append(s.subs.byFirst[k], sub)
	} else {
		s.subs.wild = append(s.subs.wild, sub)
	}
	return sub
}

// Unsubscribe removes a subscription.
func (s *Server) Unsubscribe(sub *Sub) {
	if sub.closed {
		return
	}
	sub.closed = true
	if t := subKey(sub.Subject); t != "" {
		s.subs.byFirst[t] = removePtr(s.subs.byFirst[t], sub)
		if len(s.subs.byFirst[t]) == 0 {
			delete(s.subs.byFirst, t)
		}
	} else {
		s.subs.wild = removePtr(s.subs.wild, sub)
	}
}

// Publish delivers m to every matching subscription and returns how many
// there were (0 means no responders for a request).
func (s *Server) Publish(m *Msg) int {
	n := 0
	k1, k2 := subjectKeys(m.Subject)
	for _, k := range [2]string{k1, k2} {
		if k == "" {
			continue
		}
		for _, sub := range s.subs.byFirst[k] {
			if !sub.closed && SubjectMatch(sub.Subject, m.Subject) {
				n++
				sub.sink.Deliver(sub, m)
			}
		}
	}
	for _, sub := range s.subs.wild {
		if !sub.closed && SubjectMatch(sub.Subject, m.Subject) {
			n++
			sub.sink.Deliver(sub, m)
		}
	}
	return n
}

// Interest reports how many subscriptions match subject.
func (s *Server) Interest(subject string) int {
	n := 0
	k1, k2 := subjectKeys(subject)
	for _, k := range [2]string{k1, k2} {
		if k == "" {
			continue
		}
		for _, sub := range s.subs.byFirst[k] {
			if SubjectMatch(sub.Subject, subject) {
				n++
			}
		}
	}
	for _, sub := range s.subs.wild {
		if SubjectMatch(sub.Subject, subject) {
			n++
		}
	}
	return n
}
