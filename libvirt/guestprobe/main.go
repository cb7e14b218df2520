// Command guestprobe is the smallest guest program that proves the path an
// agent takes to NATS inside an e2e VM: a systemd service, the vport dialer
// over a virtio-serial port, the host bridge, the embedded nats-server.
// It publishes probe.hello.<hostname> every second and answers
// probe.ping.<hostname>.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"

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
	for {
		nc.Publish("probe.hello."+host, []byte(fmt.Sprintf("%.1f", time.Since(start).Seconds())))
		time.Sleep(time.Second)
	}
}
