package natsim

import (
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/sim/kernel"
)

type nopClient struct{ n int }

func (c *nopClient) WatchEntry(*Conn, int, *Entry)    { c.n++ }
func (c *nopClient) Message(*Conn, int, *Msg)         {}
func (c *nopClient) Reply(*Conn, uint64, *Msg, error) {}
func (c *nopClient) ConnState(*Conn, bool)            {}

// BenchmarkKVPutWatch is one heartbeat's trip: a client's KV put through the
// network to the server and the watch delivery to a subscriber of every key
// (the operator), among 10,000 per-device watchers that do not match.
func BenchmarkKVPutWatch(b *testing.B) {
	k := kernel.New(1)
	s := NewServer()
	s.CreateBucket("hb", 1)
	n := NewNet(k, s, &fixedPolicy{})
	op := &nopClient{}
	n.Connect(op).Watch(1, "hb", ">", WatchLast, 0)
	for i := 0; i < 10000; i++ {
		n.Connect(&nopClient{}).Watch(1, "hb", "dev"+itoa(i), WatchLast, 0)
	}
	w := n.Connect(&nopClient{})
	k.Run(time.Second)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.Put("hb", "dev-x", nil, nil)
		k.Step()
		k.Step()
	}
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "events/s")
}

func itoa(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
		if i == 0 {
			return string(b)
		}
	}
}
