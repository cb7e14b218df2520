package core

import "time"

// Clock is the seam through which shells read time. Cores never call it:
// they receive now as an argument of Step. The production implementation is
// internal/wallclock; the simulator supplies virtual time.
type Clock interface {
	Now() time.Time
}

// IDSource is the seam for fresh identifiers (boot ids, request ids): the
// production shell draws them from crypto/rand, the simulator from a seeded
// stream. Cores receive ids through inputs.
type IDSource interface {
	NewID() string
}

// UnixMilli converts a time to the Unix-millisecond integers carried in
// messages.
func UnixMilli(t time.Time) int64 { return t.UnixMilli() }
