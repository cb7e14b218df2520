package vport

import (
	"net"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/internal/natstest"
	"github.com/nats-io/nats.go"
)

func startNATS(t *testing.T) string {
	t.Helper()
	s := natstest.Start(t)
	return s.Addr().(*net.TCPAddr).String()
}

// TestNATSOverVirtioSerial is the agent's configuration end to end: nats.go
// with the vport Dialer, the bridge, an embedded nats-server. The port is
// yanked from under the client (the host side breaks); nats.go reconnects
// through a fresh session and requests work again.
func TestNATSOverVirtioSerial(t *testing.T) {
	addr := startNATS(t)
	q := newFakeQEMU(t, 0)
	startBridge(t, q.socket, addr)

	host, err := nats.Connect("nats://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if _, err := host.Subscribe("device-commands.vm-a.ping", func(m *nats.Msg) { m.Respond(append([]byte("pong:"), m.Data...)) }); err != nil {
		t.Fatal(err)
	}
	host.Flush()

	reconnected := make(chan struct{}, 1)
	d := &Dialer{Path: portPaths(t, 1), Timeout: 3 * time.Second, open: q.openPort}
	guest, err := nats.Connect("nats://vport", nats.SetCustomDialer(d), nats.SkipHostLookup(),
		nats.ReconnectWait(100*time.Millisecond), nats.MaxReconnects(-1),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	if err != nil {
		t.Fatalf("connect over vport: %v", err)
	}
	defer guest.Close()

	request := func(what string) {
		t.Helper()
		msg, err := guest.Request("device-commands.vm-a.ping", []byte(what), 3*time.Second)
		if err != nil {
			t.Fatalf("request %s: %v", what, err)
		}
		if string(msg.Data) != "pong:"+what {
			t.Fatalf("reply %q, want %q", msg.Data, "pong:"+what)
		}
	}
	request("first")

	q.dropHost()
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("nats.go did not reconnect over vport within 10s")
	}
	request("after reconnect")
}
