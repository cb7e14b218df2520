package mathrand

import "math/rand"

func Bad(xs []int) int {
	rand.Seed(1)                                                          // want "rand.Seed uses the global random source"
	rand.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] }) // want "rand.Shuffle"
	return rand.Intn(10)                                                  // want "rand.Intn"
}

// Fine: a generator seeded by the caller.
func Good(seed int64) int {
	var r *rand.Rand = rand.New(rand.NewSource(seed))
	z := rand.NewZipf(r, 1.5, 1, 10)
	return r.Intn(10) + int(z.Uint64())
}
