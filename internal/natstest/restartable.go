package natstest

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is an embedded JetStream nats-server that a test can stop and start
// again on the same port with the same store: what an outage or a server
// restart looks like to a client. It is shut down by tb.Cleanup.
type Server struct {
	mu    sync.Mutex
	opts  server.Options
	s     *server.Server
	url   string
	tb    TB
	store string
}

// StartRestartable runs a JetStream nats-server on 127.0.0.1 at a fixed free
// port (so clients reconnect to the same URL after Restart).
func StartRestartable(tb TB) *Server {
	tb.Helper()
	port, err := FreePort()
	if err != nil {
		tb.Fatalf("nats-server: %v", err)
	}
	return StartAt(tb, port)
}

// StartAt is StartRestartable on a given port.
func StartAt(tb TB, port int) *Server {
	tb.Helper()
	srv := NewStopped(tb, port)
	if err := srv.Start(); err != nil {
		tb.Fatalf("%v", err)
	}
	return srv
}

// NewStopped prepares a server on port without starting it: a test can hand
// its URL to a client first (a client that starts while NATS is down).
func NewStopped(tb TB, port int) *Server {
	tb.Helper()
	srv := &Server{tb: tb, store: tb.TempDir(), url: "nats://127.0.0.1:" + strconv.Itoa(port)}
	srv.opts = server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: srv.store,
		NoLog: true, NoSigs: true}
	tb.Cleanup(srv.Stop)
	return srv
}

// URL is the client URL; it stays the same across restarts.
func (s *Server) URL() string { return s.url }

// Running reports whether the server is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s != nil
}

// Server returns the running server (nil while stopped).
func (s *Server) Server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s
}

// Start starts a stopped server (JetStream data kept from before).
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s != nil {
		return nil
	}
	opts := s.opts
	var (
		ns  *server.Server
		err error
	)
	// The port of a server just shut down can take a moment to free.
	for i := 0; i < 50; i++ {
		ns, err = server.NewServer(&opts)
		if err != nil {
			return fmt.Errorf("nats-server: %w", err)
		}
		ns.Start()
		if ns.ReadyForConnections(10 * time.Second) {
			break
		}
		ns.Shutdown()
		ns.WaitForShutdown()
		ns = nil
		time.Sleep(100 * time.Millisecond)
	}
	if ns == nil {
		return fmt.Errorf("nats-server on %s did not start", s.url)
	}
	s.s = ns
	return nil
}

// Stop shuts the server down; clients see their connection drop.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s == nil {
		return
	}
	s.s.Shutdown()
	s.s.WaitForShutdown()
	s.s = nil
}

// Restart stops the server, waits down, and starts it again.
func (s *Server) Restart(down time.Duration) error {
	s.Stop()
	time.Sleep(down)
	return s.Start()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
