package link

import "time"

// outbox holds KV writes until they are acknowledged. Writes to the same key
// replace each other (newest value wins): an agent that was offline
// publishes its latest heartbeat, state and status, not the history it
// missed. One write is in flight at a time, oldest first.
type outbox struct {
	items    []item // oldest first
	seq      uint64
	token    uint64 // token of the write in flight (0: none)
	tokenSeq uint64 // seq of the item in flight
	next     uint64 // last token issued
	delay    time.Duration
	backoff  bool // TimerOutbox armed
	bucket   bool // waiting for a bucket to be created
}

type item struct {
	bucket, key string
	value       []byte
	obj         any
	del         bool
	seq         uint64
}

func (o *outbox) put(l *Link, bucket, key string, value []byte, obj any, del bool) {
	o.seq++
	it := item{bucket: bucket, key: key, value: value, obj: obj, del: del, seq: o.seq}
	for i := range o.items {
		if o.items[i].key == key && o.items[i].bucket == bucket {
			// The newer value replaces the older and queues behind the rest.
			copy(o.items[i:], o.items[i+1:])
			o.items[len(o.items)-1] = it
			o.kick(l)
			return
		}
	}
	o.items = append(o.items, it)
	o.kick(l)
}

// drop forgets every write not acknowledged (the one in flight may still
// land; nothing is retried).
func (o *outbox) drop() {
	clear(o.items)
	o.items = o.items[:0]
	o.token = 0
}

// kick sends the oldest write when nothing is in flight and nothing stops it.
func (o *outbox) kick(l *Link) {
	if o.token != 0 || o.backoff || o.bucket || !l.conn || len(o.items) == 0 {
		return
	}
	it := &o.items[0]
	o.next++
	o.token, o.tokenSeq = o.next, it.seq
	l.emit(Action{Kind: ActWrite, Token: o.token, Bucket: it.bucket, Key: it.key, Value: it.value, Obj: it.obj,
		Delete: it.del, Timeout: l.timeout})
}

func (l *Link) writeDone(token uint64, err error) {
	o := &l.out
	if token == 0 || token != o.token {
		return
	}
	o.token = 0
	i := -1
	for j := range o.items {
		if o.items[j].seq == o.tokenSeq {
			i = j
			break
		}
	}
	if err == nil {
		if i >= 0 {
			copy(o.items[i:], o.items[i+1:])
			o.items[len(o.items)-1] = item{} // let the value go, keep the array
			o.items = o.items[:len(o.items)-1]
		}
		o.delay = 0
		if len(o.items) == 0 && l.exit != nil {
			l.finish()
			return
		}
		o.kick(l)
		return
	}
	if i < 0 {
		// Replaced while in flight: the newer value goes next anyway.
		o.kick(l)
		return
	}
	it := &o.items[i]
	if isBucketNotFound(err) {
		o.bucket = true
		l.askBucket(it.bucket)
		return
	}
	o.delay = nextDelay(o.delay, writeBackoffMin)
	if l.conn {
		l.log("warn", "kv write failed; retrying", "bucket", it.bucket, "key", it.key, "err", err, "retry_in", o.delay)
	}
	o.backoff = true
	l.arm(TimerOutbox, l.jitter(o.delay))
}

func nextDelay(d, min time.Duration) time.Duration {
	if d == 0 {
		return min
	}
	return minDur(d*2, maxBackoff)
}

func minDur(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

// connState handles a (re)connect or a disconnect.
func (l *Link) connState(up bool) {
	if up == l.conn {
		return
	}
	l.conn = up
	if !up {
		return // writes and watches in flight report their failure themselves
	}
	l.everConn = true
	// Retry at once: writes left over from the outage go first.
	if l.out.backoff {
		l.out.backoff = false
		l.cancel(TimerOutbox)
	}
	l.out.delay = 0
	l.out.kick(l)
	// A watch goes quiet after a server restart until it is created again:
	// re-create both from their last revision.
	for w := range l.watches {
		l.watches[w].delay = 0
		l.createWatch(WatchID(w))
	}
}

// askBucket asks for a bucket to be created (once while it is out).
func (l *Link) askBucket(b string) {
	for _, x := range l.bucketsAsked {
		if x == b {
			return
		}
	}
	l.bucketsAsked = append(l.bucketsAsked, b)
	l.emit(Action{Kind: ActCreateBucket, Bucket: b, Timeout: l.timeout})
}

func (l *Link) bucketCreated(b string, err error) {
	found := false
	for i, x := range l.bucketsAsked {
		if x == b {
			l.bucketsAsked = append(l.bucketsAsked[:i], l.bucketsAsked[i+1:]...)
			found = true
			break
		}
	}
	if !found {
		return
	}
	if err != nil {
		l.log("warn", "kv bucket create failed", "bucket", b, "err", err)
	}
	// Whatever the result, the writer and the watches waiting for it try
	// again (with back-off after a failure).
	if l.out.bucket {
		l.out.bucket = false
		if err != nil {
			l.out.delay = nextDelay(l.out.delay, writeBackoffMin)
			l.out.backoff = true
			l.arm(TimerOutbox, l.jitter(l.out.delay))
		} else {
			l.out.kick(l)
		}
	}
	for w := range l.watches {
		wt := &l.watches[w]
		if wt.state != wBucket || wt.bucket != b {
			continue
		}
		if err != nil {
			l.backoffWatch(WatchID(w))
		} else {
			l.createWatch(WatchID(w))
		}
	}
}
