package sub

import "time"

// Elapsed is pure.
func Elapsed(a, b time.Time) time.Duration { return b.Sub(a) }
