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

type ackClient struct{ nopClient }

func (c *ackClient) WriteDone(*Conn, uint64, uint64, error) { c.n++ }

// BenchmarkKVWriteWatch is one heartbeat's trip as a shell makes it
// (Conn.Write): a client's KV put through the network to the server, the
// watch delivery to a subscriber of every key (the operator), among 10,000
// per-device watchers that do not match, and the acknowledgement back to
// the writer.
func BenchmarkKVWriteWatch(b *testing.B) {
	k := kernel.New(1)
	s := NewServer()
	s.CreateBucket("hb", 1)
	n := NewNet(k, s, &fixedPolicy{})
	op := &nopClient{}
	n.Dial(op, ConnOptions{}).WatchFrom(1, "hb", ">", 0, time.Second)
	for i := 0; i < 10000; i++ {
		n.Dial(&nopClient{}, ConnOptions{}).WatchFrom(1, "hb", "dev"+itoa(i), 0, time.Second)
	}
	wc := &ackClient{}
	w := n.Dial(wc, ConnOptions{})
	k.Run(time.Second)
	es := make([]Entry, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := &es[i]
		e.Bucket, e.Key, e.Op = "hb", "dev-x", OpPut
		w.Write(uint64(i), e, 5*time.Second)
		k.Step()
		k.Step()
		k.Step()
	}
	b.ReportMetric(float64(3*b.N)/b.Elapsed().Seconds(), "events/s")
	if wc.n < b.N-1 {
		b.Fatalf("%d acknowledgements for %d writes", wc.n, b.N)
	}
}
