package mathrandv2

import "math/rand/v2"

func Bad() uint64 {
	_ = rand.N(10)       // want "rand.N uses the global random source"
	return rand.Uint64() // want "rand.Uint64"
}

// Fine: explicitly seeded generators.
func Good(seed uint64) uint64 {
	var src rand.Source = rand.NewPCG(seed, seed)
	_ = rand.New(rand.NewChaCha8([32]byte{}))
	return rand.New(src).Uint64()
}
