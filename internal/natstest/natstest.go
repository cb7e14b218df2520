// Package natstest starts an embedded nats-server with JetStream for tests:
// 127.0.0.1, a random port, a temporary store, stopped when the test ends.
package natstest

import (
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TB is what Start needs of a test: *testing.T, *testing.B and GinkgoT()
// all provide it.
type TB interface {
	Helper()
	TempDir() string
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// Start runs a JetStream-enabled nats-server on 127.0.0.1 and registers its
// shutdown with tb.Cleanup.
func Start(tb TB) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: tb.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatalf("nats-server: %v", err)
	}
	s.Start()
	tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatalf("nats-server did not start within 10s")
	}
	return s
}
