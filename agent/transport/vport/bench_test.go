package vport

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkSessionThroughput measures host → guest bytes through the bridge
// and a session (framing, checksums, the frame reader's resync scan), with
// the guest reading at most 4 KiB per read as the virtio console driver
// delivers. It excludes QEMU and the guest kernel.
func BenchmarkSessionThroughput(b *testing.B) {
	q := newFakeQEMU(b, 4096)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	const total = 8 << 20
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for sent := 0; sent < total; sent += len(buf) {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	br := &Bridge{Socket: q.socket, Target: ln.Addr().String()}
	stop := make(chan struct{})
	go func() {
		ctx, cancel := contextUntil(stop)
		defer cancel()
		br.Run(ctx)
	}()
	defer close(stop)
	d := &Dialer{Path: "/dev/null", Timeout: 5 * time.Second, open: q.openPort}
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		c, err := d.Dial("", "")
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.CopyN(io.Discard, c, total); err != nil || n != total {
			b.Fatalf("read %d bytes: %v", n, err)
		}
		c.Close()
	}
}

func contextUntil(stop <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, cancel
}
