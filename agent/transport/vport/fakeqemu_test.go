package vport

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeQEMU models one virtio-serial channel the way QEMU and the Linux
// virtio console driver behave, as measured on real VMs:
//
//   - QEMU listens on a unix socket (the host side); one client at a time.
//   - The guest port is one byte stream: bytes from the host that no guest
//     process has read are delivered to the next process that opens it.
//   - Only one guest process can have the port open (EBUSY otherwise).
//   - A guest read returns EOF, without blocking, while no host client is
//     connected; a guest write blocks until one is.
//
// chunk limits how many bytes one guest read returns, so frames arrive torn.
type fakeQEMU struct {
	t      testing.TB
	socket string
	chunk  int

	mu       sync.Mutex
	cond     *sync.Cond
	ln       net.Listener
	host     net.Conn // connected host client, or nil
	toGuest  []byte
	open     *fakePort
	reads    int // guest Read calls, to detect spinning
	hostGone chan struct{}
}

func newFakeQEMU(t testing.TB, chunk int) *fakeQEMU {
	t.Helper()
	dir, err := os.MkdirTemp("", "vport")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	q := &fakeQEMU{t: t, socket: filepath.Join(dir, "chan.sock"), chunk: chunk}
	q.cond = sync.NewCond(&q.mu)
	q.start()
	t.Cleanup(q.stop)
	return q
}

// start listens on the socket (QEMU started).
func (q *fakeQEMU) start() {
	ln, err := net.Listen("unix", q.socket)
	if err != nil {
		q.t.Fatal(err)
	}
	q.mu.Lock()
	q.ln = ln
	q.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			q.mu.Lock()
			if q.host != nil {
				q.mu.Unlock()
				c.Close() // one client at a time
				continue
			}
			q.host = c
			q.cond.Broadcast()
			q.mu.Unlock()
			go q.readHost(c)
		}
	}()
}

func (q *fakeQEMU) readHost(c net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		q.mu.Lock()
		q.toGuest = append(q.toGuest, buf[:n]...)
		if err != nil {
			if q.host == c {
				q.host = nil
			}
			q.cond.Broadcast()
			q.mu.Unlock()
			return
		}
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

// stop closes the listener and the host client (QEMU exited). Unread
// bytes are lost, as they are when a VM is destroyed.
func (q *fakeQEMU) stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ln != nil {
		q.ln.Close()
		q.ln = nil
	}
	if q.host != nil {
		q.host.Close()
		q.host = nil
	}
	q.toGuest = nil
	os.Remove(q.socket)
	q.cond.Broadcast()
}

// dropHost disconnects the current host client, as if the bridge died.
func (q *fakeQEMU) dropHost() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.host != nil {
		q.host.Close()
		q.host = nil
	}
	q.cond.Broadcast()
}

func (q *fakeQEMU) guestReads() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.reads
}

// openPort is an openFunc for the channel's single port.
func (q *fakeQEMU) openPort(string) (port, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.open != nil {
		return nil, &os.PathError{Op: "open", Path: "fake", Err: syscall.EBUSY}
	}
	p := &fakePort{q: q}
	q.open = p
	return p, nil
}

// fakePort is one guest process's open port.
type fakePort struct {
	q      *fakeQEMU
	closed bool
	rdl    time.Time
	wdl    time.Time
}

// waitLocked waits on the cond until woken or the deadline passes; it
// reports whether the deadline passed.
func (p *fakePort) waitLocked(dl time.Time) bool {
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return true
		}
		timer := time.AfterFunc(d, func() {
			p.q.mu.Lock()
			p.q.cond.Broadcast()
			p.q.mu.Unlock()
		})
		defer timer.Stop()
	}
	p.q.cond.Wait()
	return !dl.IsZero() && time.Until(dl) <= 0
}

func (p *fakePort) Read(b []byte) (int, error) {
	q := p.q
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reads++
	for {
		if p.closed {
			return 0, os.ErrClosed
		}
		if len(q.toGuest) > 0 {
			n := len(b)
			if q.chunk > 0 {
				n = min(n, q.chunk)
			}
			n = copy(b[:n], q.toGuest)
			q.toGuest = q.toGuest[n:]
			return n, nil
		}
		if q.host == nil {
			return 0, io.EOF
		}
		if !p.rdl.IsZero() && time.Until(p.rdl) <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		p.waitLocked(p.rdl)
	}
}

func (p *fakePort) Write(b []byte) (int, error) {
	q := p.q
	q.mu.Lock()
	for {
		if p.closed {
			q.mu.Unlock()
			return 0, os.ErrClosed
		}
		if q.host != nil {
			break
		}
		if !p.wdl.IsZero() && time.Until(p.wdl) <= 0 {
			q.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
		p.waitLocked(p.wdl)
	}
	h := q.host
	q.mu.Unlock()
	n, err := h.Write(b)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		// The host went away mid-write; the guest sees the write block
		// and then fail, never a half-delivered success.
		return n, io.ErrClosedPipe
	}
	return n, err
}

func (p *fakePort) Close() error {
	q := p.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if p.closed {
		return os.ErrClosed
	}
	p.closed = true
	if q.open == p {
		q.open = nil
	}
	q.cond.Broadcast()
	return nil
}

func (p *fakePort) SetReadDeadline(t time.Time) error {
	p.q.mu.Lock()
	p.rdl = t
	p.q.cond.Broadcast()
	p.q.mu.Unlock()
	return nil
}

func (p *fakePort) SetWriteDeadline(t time.Time) error {
	p.q.mu.Lock()
	p.wdl = t
	p.q.cond.Broadcast()
	p.q.mu.Unlock()
	return nil
}
