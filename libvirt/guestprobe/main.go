// Command guestprobe is the smallest guest program that proves the path an
// agent takes to NATS inside an e2e VM: a systemd service, the vport dialer
// over a virtio-serial port, the host bridge, the embedded nats-server.
// It publishes probe.hello.<hostname> every second, answers
// probe.ping.<hostname>, and on probe.fetch.<hostname> reads the named object
// from the artifacts object store and replies with its size and the time it
// took (the channel's throughput).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/agent/transport/vport"
)

func main() {
	start := time.Now()
	host, _ := os.Hostname()
	nc, err := nats.Connect("nats://vport", nats.SetCustomDialer(&vport.Dialer{}), nats.SkipHostLookup(),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.ConnectHandler(func(*nats.Conn) { slog.Info("guestprobe: connected", "after", time.Since(start)) }))
	if err != nil {
		slog.Error("guestprobe: connect", "err", err)
		os.Exit(1)
	}
	defer nc.Close()
	if _, err := nc.Subscribe("probe.ping."+host, func(m *nats.Msg) {
		m.Respond([]byte(fmt.Sprintf("pong %s %.1f", host, time.Since(start).Seconds())))
	}); err != nil {
		slog.Error("guestprobe: subscribe", "err", err)
		os.Exit(1)
	}
	if _, err := nc.Subscribe("probe.fetch."+host, func(m *nats.Msg) { go fetch(nc, m) }); err != nil {
		slog.Error("guestprobe: subscribe", "err", err)
		os.Exit(1)
	}
	for {
		nc.Publish("probe.hello."+host, []byte(fmt.Sprintf("%.1f", time.Since(start).Seconds())))
		time.Sleep(time.Second)
	}
}

func fetch(nc *nats.Conn, m *nats.Msg) {
	// nats.go bounds an object Get by the context's deadline, or by 5 s
	// when it has none: give it a real one.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	n, err := func() (int64, error) {
		js, err := jetstream.New(nc)
		if err != nil {
			return 0, err
		}
		obs, err := js.ObjectStore(ctx, "artifacts")
		if err != nil {
			return 0, err
		}
		r, err := obs.Get(ctx, string(m.Data))
		if err != nil {
			return 0, err
		}
		defer r.Close()
		return io.Copy(io.Discard, r)
	}()
	if err != nil {
		m.Respond([]byte("error " + err.Error()))
		return
	}
	m.Respond([]byte(fmt.Sprintf("%d %d", n, time.Since(start).Milliseconds())))
}
