package allow

import "time"

// Clock is the production clock behind a seam.
type Clock struct{}

func (Clock) Now() time.Time { return time.Now() } //detguard:allow the production clock; cores never call it

//detguard:allow shells call this, cores receive now as an input
func Wall() time.Time { return time.Now() }

func Bad() time.Time {
	//detguard:allow // want "needs a reason"
	return time.Now() // want "time.Now reads the clock"
}
