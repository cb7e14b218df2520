package cryptorand

import "crypto/rand" // want "import of \"crypto/rand\": crypto randomness"

func Bad(b []byte) { _, _ = rand.Read(b) }
