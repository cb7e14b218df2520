// Package wallclock is the production implementation of core.Clock. It lives
// outside core/ so that no package the simulator drives can reach the wall
// clock: only shells (agent, operator runner, dashboard) import it.
package wallclock

import "time"

// Clock reads the machine's wall clock.
type Clock struct{}

// Now returns time.Now().
func (Clock) Now() time.Time { return time.Now() }
