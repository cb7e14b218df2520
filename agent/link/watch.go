package link

import (
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
)

// watch is one supervised KV watch.
type watch struct {
	bucket, filter string
	lastRev        uint64 // highest revision delivered
	gen            uint32 // current creation
	state          uint8
	delay          time.Duration
}

const (
	wIdle     uint8 = iota // never created, or failed while disconnected
	wCreating              // created; replay under way
	wLive                  // replayed; updates flow
	wBackoff               // failed; TimerWatch* armed
	wBucket                // failed for a missing bucket; ActCreateBucket out
)

func watchTimer(w WatchID) Timer {
	if w == WatchDesired {
		return TimerWatchDesired
	}
	return TimerWatchMarker
}

// createWatch (re-)creates watch w from its last revision + 1, replacing the
// creation before.
func (l *Link) createWatch(w WatchID) {
	wt := &l.watches[w]
	if wt.state == wBackoff {
		l.cancel(watchTimer(w))
	}
	if wt.state == wCreating || wt.state == wLive {
		l.emit(Action{Kind: ActStopWatch, Watch: w, Gen: wt.gen})
	}
	wt.gen++
	wt.state = wCreating
	from := uint64(0)
	if wt.lastRev > 0 {
		from = wt.lastRev + 1
	}
	l.emit(Action{Kind: ActCreateWatch, Watch: w, Gen: wt.gen, Bucket: wt.bucket, Filter: wt.filter, From: from,
		Timeout: l.timeout})
}

func (l *Link) retryWatch(w WatchID) {
	if l.watches[w].state != wBackoff {
		return
	}
	l.watches[w].state = wIdle
	if l.conn {
		l.createWatch(w)
	}
}

func (l *Link) backoffWatch(w WatchID) {
	wt := &l.watches[w]
	if !l.conn {
		wt.state = wIdle // the reconnect creates it again
		return
	}
	wt.delay = nextDelay(wt.delay, watchBackoffMin)
	wt.state = wBackoff
	l.arm(watchTimer(w), l.jitter(wt.delay))
}

func (l *Link) current(w WatchID, gen uint32) *watch {
	if w >= numWatches {
		return nil
	}
	wt := &l.watches[w]
	if gen != wt.gen || (wt.state != wCreating && wt.state != wLive) {
		return nil // an earlier creation, stopped since
	}
	return wt
}

func (l *Link) watchEntry(w WatchID, gen uint32, e Entry) {
	wt := l.current(w, gen)
	if wt == nil || e.Rev <= wt.lastRev {
		return // seen already
	}
	wt.lastRev = e.Rev
	var in agentcore.Input
	var err error
	if w == WatchDesired {
		in, err = DesiredInput(l.device, e)
		switch in := in.(type) {
		case agentcore.DesiredPut:
			l.setLive(in.Deployment, true)
		case agentcore.DesiredInvalid:
			l.setLive(in.Deployment, true)
			l.log("warn", "invalid desired state", "deployment", in.Deployment, "revision", in.Revision, "err", in.Err)
		case agentcore.DesiredDeleted:
			l.setLive(in.Deployment, false)
		}
	} else {
		in, err = MarkerInput(l.device, e)
		if inv, ok := in.(agentcore.MarkerInvalid); ok {
			l.log("warn", "invalid upgrade marker", "revision", e.Rev, "err", inv.Err)
		}
	}
	if err != nil {
		l.log("warn", "ignoring kv key", "key", e.Key, "err", err)
		return
	}
	l.deliver(in)
}

func (l *Link) watchReplayed(w WatchID, gen uint32, bucketRev uint64) {
	wt := l.current(w, gen)
	if wt == nil {
		return
	}
	if bucketRev != 0 && bucketRev < wt.lastRev {
		// The bucket was re-created since (its revisions restarted): what it
		// holds now is all new, replay it whole.
		l.log("warn", "kv bucket revisions went backwards; replaying it", "bucket", wt.bucket,
			"last_seen", wt.lastRev, "bucket_last", bucketRev)
		wt.lastRev = 0
		l.createWatch(w)
		return
	}
	wt.state = wLive
	wt.delay = 0
	if w == WatchDesired && !l.desiredReplayed {
		l.desiredReplayed = true
		l.collectOrphans()
	}
}

func (l *Link) watchFailed(w WatchID, gen uint32, err error) {
	wt := l.current(w, gen)
	if wt == nil {
		return
	}
	if isBucketNotFound(err) {
		wt.state = wBucket
		l.askBucket(wt.bucket)
		return
	}
	l.log("warn", "kv watch failed", "bucket", wt.bucket, "filter", wt.filter, "err", err)
	l.backoffWatch(w)
}
