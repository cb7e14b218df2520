package vport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echoTarget is a TCP server on 127.0.0.1 that echoes lines; the line
// "FLOOD" makes it send floodBytes of 'X' first. It counts connections.
type echoTarget struct {
	addr  string
	conns atomic.Int64
}

const floodBytes = 200 << 10

func newEchoTarget(t *testing.T) *echoTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoTarget{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if line == "FLOOD\n" {
						if _, err := c.Write(bytes.Repeat([]byte("X"), floodBytes)); err != nil {
							return
						}
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return e
}

func startBridge(t *testing.T, socket, target string) *Bridge {
	t.Helper()
	b := &Bridge{Socket: socket, Target: target}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("bridge did not stop within 5s of cancel")
		}
	})
	return b
}

// portPaths makes n placeholder files to stand for /dev/vportNpM and
// returns their glob.
func portPaths(t *testing.T, n int) string {
	dir := t.TempDir()
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, "port."+string(rune('0'+i))), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "port.*")
}

func dialFake(t *testing.T, q *fakeQEMU, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	d := &Dialer{Path: portPaths(t, 1), Timeout: timeout, open: q.openPort}
	return d.Dial("tcp", "ignored:4222")
}

func mustDial(t *testing.T, q *fakeQEMU) net.Conn {
	t.Helper()
	c, err := dialFake(t, q, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, line string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatalf("write %q: %v", line, err)
	}
	got, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read echo of %q: %v", line, err)
	}
	if got != line+"\n" {
		t.Fatalf("echo: got %q, want %q", trunc(got), line)
	}
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

func TestSessionCarriesBytesBothWays(t *testing.T) {
	q := newFakeQEMU(t, 5) // torn into 5-byte reads
	target := newEchoTarget(t)
	startBridge(t, q.socket, target.addr)
	c := mustDial(t, q)
	r := bufio.NewReader(c)
	roundTrip(t, c, r, "hello")
	big := strings.Repeat("0123456789", 5000) // spans several frames
	roundTrip(t, c, r, big)
	if got := target.conns.Load(); got != 1 {
		t.Fatalf("target saw %d connections, want 1", got)
	}
}

func TestStaleBytesNeverReachTheNextSession(t *testing.T) {
	q := newFakeQEMU(t, 7)
	target := newEchoTarget(t)
	b := startBridge(t, q.socket, target.addr)

	// Session 1 asks for a flood and goes away after reading only a little
	// of it, in the middle of a frame: the rest stays in the channel.
	c1 := mustDial(t, q)
	if _, err := io.WriteString(c1, "FLOOD\n"); err != nil {
		t.Fatal(err)
	}
	c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c1, make([]byte, 3)); err != nil {
		t.Fatalf("read start of flood: %v", err)
	}
	c1.Close()

	// Session 2 on the same port sees only its own bytes.
	c2 := mustDial(t, q)
	r2 := bufio.NewReader(c2)
	roundTrip(t, c2, r2, "second session")
	roundTrip(t, c2, r2, "still clean")
	if got := target.conns.Load(); got != 2 {
		t.Fatalf("target saw %d connections, want 2 (one per session)", got)
	}
	if b.Sessions() != 2 {
		t.Fatalf("bridge connected %d sessions, want 2", b.Sessions())
	}
}

func TestSessionEndsWhenTheTargetCloses(t *testing.T) {
	q := newFakeQEMU(t, 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("bye\n"))
			c.Close()
		}
	}()
	startBridge(t, q.socket, ln.Addr().String())
	c := mustDial(t, q)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != "bye\n" {
		t.Fatalf("got %q, want the target's last words then EOF", got)
	}
}

func TestDialWaitsForTheHostWithoutSpinning(t *testing.T) {
	q := newFakeQEMU(t, 0)
	target := newEchoTarget(t)
	// The bridge arrives 600ms after the guest starts dialling.
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := dialFake(t, q, 5*time.Second)
		res <- result{c, err}
	}()
	time.Sleep(600 * time.Millisecond)
	startBridge(t, q.socket, target.addr)
	r := <-res
	if r.err != nil {
		t.Fatalf("dial while the host was away: %v", r.err)
	}
	defer r.c.Close()
	roundTrip(t, r.c, bufio.NewReader(r.c), "late host")
	if n := q.guestReads(); n > 100 {
		t.Fatalf("guest read the port %d times while waiting: it spins on EOF", n)
	}
}

func TestHostDisconnectEndsTheSessionAndRedialWorks(t *testing.T) {
	q := newFakeQEMU(t, 0)
	target := newEchoTarget(t)
	startBridge(t, q.socket, target.addr)
	c := mustDial(t, q)
	r := bufio.NewReader(c)
	roundTrip(t, c, r, "before")
	q.dropHost() // the bridge's connection breaks; it reconnects by itself
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the host went away: got %v, want EOF", err)
	}
	c.Close()
	c2 := mustDial(t, q)
	roundTrip(t, c2, bufio.NewReader(c2), "after")
}

func TestBridgeFollowsTheVMThroughARestart(t *testing.T) {
	q := newFakeQEMU(t, 0)
	target := newEchoTarget(t)
	startBridge(t, q.socket, target.addr)
	c := mustDial(t, q)
	roundTrip(t, c, bufio.NewReader(c), "first boot")
	c.Close()
	q.stop() // virsh destroy
	time.Sleep(200 * time.Millisecond)
	q.start() // virsh start: a new QEMU on the same socket path
	c2 := mustDial(t, q)
	roundTrip(t, c2, bufio.NewReader(c2), "second boot")
}

func TestDialUsesTheFirstFreePort(t *testing.T) {
	target := newEchoTarget(t)
	q0 := newFakeQEMU(t, 0)
	q1 := newFakeQEMU(t, 0)
	startBridge(t, q0.socket, target.addr)
	startBridge(t, q1.socket, target.addr)
	glob := portPaths(t, 2)
	open := func(p string) (port, error) {
		if strings.HasSuffix(p, ".0") {
			return q0.openPort(p)
		}
		return q1.openPort(p)
	}
	d := &Dialer{Path: glob, Timeout: 5 * time.Second, open: open}
	old, err := d.Dial("", "")
	if err != nil {
		t.Fatalf("first dial: %v", err)
	}
	defer old.Close()
	candidate, err := d.Dial("", "")
	if err != nil {
		t.Fatalf("second dial while the first port is in use: %v", err)
	}
	defer candidate.Close()
	if old.LocalAddr().String() == candidate.LocalAddr().String() {
		t.Fatalf("both connections on %s", old.LocalAddr())
	}
	roundTrip(t, old, bufio.NewReader(old), "old agent")
	roundTrip(t, candidate, bufio.NewReader(candidate), "candidate")
	d.Timeout = 300 * time.Millisecond
	if _, err := d.Dial("", ""); err == nil {
		t.Fatal("a third dial succeeded with both ports in use")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("third dial: %v, want an error saying the ports are in use", err)
	}
}

func TestDialFailsFastWhenTheTargetIsDown(t *testing.T) {
	q := newFakeQEMU(t, 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	startBridge(t, q.socket, dead)
	start := time.Now()
	_, err = dialFake(t, q, 5*time.Second)
	if !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("dial: got %v, want ErrSessionClosed", err)
	}
	if !strings.Contains(err.Error(), dead) {
		t.Errorf("error %q does not name the target %s", err, dead)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("dial took %v to report a dead target", time.Since(start))
	}
}

func TestDialNamesThePathWhenNoPortExists(t *testing.T) {
	d := &Dialer{Path: filepath.Join(t.TempDir(), "none.*"), Timeout: 300 * time.Millisecond}
	_, err := d.Dial("", "")
	if err == nil || !strings.Contains(err.Error(), "no port matches") {
		t.Fatalf("dial: got %v, want an error naming the missing port", err)
	}
}

func TestResolveMapsSysfsNames(t *testing.T) {
	root := t.TempDir()
	oldSys, oldDev := sysfsRoot, devRoot
	sysfsRoot, devRoot = filepath.Join(root, "sys"), filepath.Join(root, "dev")
	defer func() { sysfsRoot, devRoot = oldSys, oldDev }()
	for dev, name := range map[string]string{"vport1p1": "org.flotilla.nats.1", "vport1p2": "org.flotilla.nats.0", "vport1p3": "org.qemu.guest_agent.0"} {
		os.MkdirAll(filepath.Join(sysfsRoot, dev), 0o755)
		os.WriteFile(filepath.Join(sysfsRoot, dev, "name"), []byte(name+"\n"), 0o644)
		os.MkdirAll(devRoot, 0o755)
		os.WriteFile(filepath.Join(devRoot, dev), nil, 0o600)
	}
	got := resolve("/dev/virtio-ports/org.flotilla.nats.*")
	want := []string{filepath.Join(devRoot, "vport1p2"), filepath.Join(devRoot, "vport1p1")}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("resolve: got %v, want %v (sorted by port name, other ports left out)", got, want)
	}
}

// TestConnKeepsOnlyItsOwnSession plays the host by hand: frames of another
// session interleaved after the ACK (a superseded session's last bytes
// racing the new session's ACK) never reach the reader.
func TestConnKeepsOnlyItsOwnSession(t *testing.T) {
	guest, host := net.Pipe()
	defer host.Close()
	d := &Dialer{Path: portPaths(t, 1), Timeout: 5 * time.Second,
		open: func(string) (port, error) { return guest, nil }}
	go func() {
		fr := newFrameReader(host)
		hello, err := fr.next()
		if err != nil || hello.typ != frameHello {
			t.Errorf("host: want HELLO, got %+v, %v", hello, err)
			host.Close()
			return
		}
		s, old := hello.session, hello.session+1
		var out []byte
		out = appendFrame(out, frameData, old, []byte("stale-before-ack "))
		out = appendFrame(out, frameAck, s, nil)
		out = appendFrame(out, frameData, old, []byte("stale-after-ack "))
		out = appendFrame(out, frameData, s, []byte("mine"))
		out = append(out, []byte("PONG\r\n")...) // unframed garbage
		out = appendFrame(out, frameClose, old, nil)
		out = appendFrame(out, frameData, s, []byte("!"))
		out = appendFrame(out, frameClose, s, []byte("done"))
		host.Write(out)
		io.Copy(io.Discard, host)
	}()
	c, err := d.Dial("", "")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != "mine!" {
		t.Fatalf("read %q, want exactly this session's bytes %q", got, "mine!")
	}
}
