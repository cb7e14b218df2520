package natstest_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flotilla-fleet/flotilla/internal/natstest"
)

// A client of a restartable server sees the outage and reconnects to the
// same URL; JetStream data survives the restart.
func TestRestartKeepsURLAndData(t *testing.T) {
	s := natstest.StartRestartable(t)
	reconnected := make(chan struct{}, 1)
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	kv, err := js.CreateKeyValue(&nats.KeyValueConfig{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("client did not reconnect after the restart")
	}
	e, err := kv.Get("k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("after restart: %v %v", e, err)
	}
}

// The proxy black-holes one direction at a time: with client → server cut a
// publish never reaches a subscriber behind the server; with server →
// client cut it reaches the server but the client hears nothing back.
func TestProxyBlackholesEachDirection(t *testing.T) {
	s := natstest.StartRestartable(t)
	p := natstest.NewProxy(t, s.URL())
	direct, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	got := make(chan string, 4)
	if _, err := direct.Subscribe("x", func(m *nats.Msg) { got <- string(m.Data) }); err != nil {
		t.Fatal(err)
	}
	direct.Flush()
	nc, err := nats.Connect(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p.Blackhole(false, true)
	nc.Publish("x", []byte("lost")) // (a Flush would wait for a PONG that cannot come)
	select {
	case m := <-got:
		t.Fatalf("%q crossed a black-holed client → server direction", m)
	case <-time.After(300 * time.Millisecond):
	}
	p.Blackhole(true, false)
	nc.Publish("x", []byte("through"))
	select {
	case m := <-got:
		if m != "through" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("client → server is not cut, but nothing arrived")
	}
	if err := nc.FlushTimeout(300 * time.Millisecond); err == nil {
		t.Fatal("a flush (PING/PONG) succeeded with server → client cut")
	}
	p.Heal()
}
