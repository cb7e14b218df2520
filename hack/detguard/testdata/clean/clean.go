// Package clean does everything a deterministic core may do.
package clean

import (
	"math/rand/v2"
	"sort"
	"time"
)

// Step takes now as an argument and a seeded generator.
func Step(now time.Time, r *rand.Rand, seen map[string]int) []string {
	deadline := now.Add(30 * time.Second)
	_ = deadline.Sub(now)
	keys := make([]string, 0, len(seen))
	for k := range seen { // ranging over a map is allowed; keys are sorted below
		keys = append(keys, k)
	}
	sort.Strings(keys)
	_ = r.IntN(len(keys) + 1)
	return keys
}

// shadow has a local named time: time.Now here is a method, not the clock.
func shadow() {
	type fake struct{ Now func() int }
	time := fake{Now: func() int { return 1 }}
	_ = time.Now()
}
