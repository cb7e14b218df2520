package renamed

import (
	gen "github.com/google/uuid"
	rnd "math/rand/v2"
	clk "time"
)

func Bad() {
	_ = clk.Now()       // want "time.Now reads the clock"
	_ = rnd.IntN(3)     // want "rand.IntN uses the global random source"
	_ = gen.NewString() // want "gen.NewString"
}

func Good(seed uint64) int { return rnd.New(rnd.NewPCG(seed, 1)).IntN(3) }
