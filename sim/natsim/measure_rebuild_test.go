//go:build measure

package natsim_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/internal/natstest"
)

// TestMeasureRebuild measures, on a real nats-server with nats.go v1.55,
// how long after a server stop a jetstream KV watch (an ordered consumer)
// rebuilds itself, for several phases of the last message and the stop
// relative to the watch's creation. It is a measurement, not a check:
//
//	go test -tags measure -run TestMeasureRebuild -v ./sim/natsim/
//
// Measured (2026-12-04; message at, stop at → rebuilt after the stop):
// 0.3s, 0.6s → 19.4s; 0.3s, 3s → 17.0s; 0.3s, 8s → 12.0s; 0.3s, 12s → 18.0s;
// 2.5s, 11s → 9.0s. natsim's model (TestWatchRebuildPhaseMatchesNatsGo)
// gives the same values.
func TestMeasureRebuild(t *testing.T) {
	for _, ph := range [][2]time.Duration{{300 * time.Millisecond, 600 * time.Millisecond}, {300 * time.Millisecond, 8 * time.Second},
		{300 * time.Millisecond, 12 * time.Second}, {2500 * time.Millisecond, 11 * time.Second}, {300 * time.Millisecond, 3 * time.Second}} {
		srv := natstest.StartRestartable(t)
		nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		ctx := context.Background()
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "kv", History: 5})
		if err != nil {
			t.Fatal(err)
		}
		w, err := kv.Watch(ctx, ">")
		if err != nil {
			t.Fatal(err)
		}
		c0 := time.Now()
		got := make(chan time.Time, 10)
		go func() {
			for e := range w.Updates() {
				if e != nil {
					got <- time.Now()
				}
			}
		}()
		time.Sleep(ph[0])
		kv.Put(ctx, "a", []byte("1"))
		<-got
		time.Sleep(time.Until(c0.Add(ph[1])))
		stop := time.Now()
		srv.Stop()
		time.Sleep(200 * time.Millisecond)
		srv.Start()
		time.Sleep(time.Second)
		for {
			c2, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := kv.Put(c2, "a", []byte("2"))
			cancel()
			if err == nil {
				break
			}
		}
		select {
		case at := <-got:
			fmt.Printf("MEASURE msg@%v stop@%v: rebuilt %v after the stop\n", ph[0], ph[1], at.Sub(stop))
		case <-time.After(40 * time.Second):
			fmt.Printf("MEASURE msg@%v stop@%v: not rebuilt in 40s\n", ph[0], ph[1])
		}
		nc.Close()
		srv.Stop()
	}
}

// TestMeasureDeadLinkWatch measures what a jetstream KV watch does across a
// dead link (a black-holed proxy) that the client notices by missed pings:
// how long after the reconnect a value stored then reaches the watch.
func TestMeasureDeadLinkWatch(t *testing.T) {
	for _, tc := range []struct {
		ping time.Duration
		cut  time.Duration // how long the link stays dead
	}{{300 * time.Millisecond, 1500 * time.Millisecond}, {5 * time.Second, 21700 * time.Millisecond}, {5 * time.Second, 25 * time.Second}} {
		srv := natstest.StartRestartable(t)
		proxy := natstest.NewProxy(t, srv.URL())
		reconnected := make(chan time.Time, 4)
		nc, err := nats.Connect(proxy.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
			nats.PingInterval(tc.ping), nats.MaxPingsOutstanding(2),
			nats.ReconnectHandler(func(*nats.Conn) { reconnected <- time.Now() }))
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		ctx := context.Background()
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "kv", History: 5})
		if err != nil {
			t.Fatal(err)
		}
		w, err := kv.Watch(ctx, ">")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan time.Time, 10)
		go func() {
			for e := range w.Updates() {
				if e != nil {
					got <- time.Now()
				}
			}
		}()
		time.Sleep(300 * time.Millisecond)
		kv.Put(ctx, "a", []byte("1"))
		<-got
		cut := time.Now()
		proxy.Blackhole(true, true)
		time.Sleep(tc.cut)
		proxy.Heal()
		var rec time.Time
		select {
		case rec = <-reconnected:
		case <-time.After(20 * time.Second):
			t.Fatalf("no reconnect")
		}
		direct, _ := nats.Connect(srv.URL())
		djs, _ := jetstream.New(direct)
		dkv, _ := djs.KeyValue(ctx, "kv")
		put := time.Now()
		dkv.Put(ctx, "a", []byte("2"))
		select {
		case at := <-got:
			fmt.Printf("MEASURE dead link ping %v for %v: reconnect %v after the cut, value stored %v after it seen %v later\n",
				tc.ping, tc.cut, rec.Sub(cut), put.Sub(rec), at.Sub(put))
		case <-time.After(40 * time.Second):
			fmt.Printf("MEASURE dead link ping %v for %v: value not seen in 40s\n", tc.ping, tc.cut)
		}
		direct.Close()
		nc.Close()
		proxy.Close()
		srv.Stop()
	}
}
