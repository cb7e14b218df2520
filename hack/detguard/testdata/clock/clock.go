package clock

import "time"

func Bad(d time.Duration) {
	_ = time.Now()               // want "time.Now reads the clock"
	_ = time.Since(time.Time{})  // want "time.Since"
	_ = time.Until(time.Time{})  // want "time.Until"
	time.Sleep(d)                // want "time.Sleep"
	<-time.After(d)              // want "time.After"
	time.AfterFunc(d, func() {}) // want "time.AfterFunc"
	_ = time.Tick(d)             // want "time.Tick"
	_ = time.NewTimer(d)         // want "time.NewTimer"
	_ = time.NewTicker(d)        // want "time.NewTicker"
	now := time.Now              // want "time.Now"
	_ = now
}

// Fine: pure functions and types of package time.
func Good(ms int64) time.Time { return time.UnixMilli(ms).Add(time.Second) }
