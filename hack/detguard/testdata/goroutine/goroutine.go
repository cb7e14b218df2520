package goroutine

func Bad(f func()) {
	go f()         // want "go statement"
	go func() {}() // want "go statement"
}
