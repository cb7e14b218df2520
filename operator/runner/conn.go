package runner

import (
	"context"
	"time"

	"github.com/flotilla-fleet/flotilla/operator/runcore"
)

// watchConn turns the connection's status changes into Connected and
// Disconnected events (the status channel drops events when full, so the
// connection is asked, and asked again every second).
func (x *executor) watchConn(ctx context.Context) {
	nc := x.r.opts.NATS
	ch := nc.StatusChanged()
	defer nc.RemoveStatusListener(ch)
	every := time.NewTicker(time.Second)
	defer every.Stop()
	last := -1
	for {
		up := 0
		if nc.IsConnected() {
			up = 1
		}
		if up != last {
			last = up
			x.r.opts.Metrics.connected(up == 1)
			if up == 1 {
				x.post(runcore.Connected{})
			} else {
				err := "connection " + nc.Status().String()
				if e := nc.LastError(); e != nil {
					err += ": " + e.Error()
				}
				x.post(runcore.Disconnected{Err: err})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-every.C:
		}
	}
}
