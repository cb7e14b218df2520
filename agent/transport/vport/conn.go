package vport

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultPath is where the libvirt runner's VMs expose their NATS ports: a
// glob over the named virtio-serial ports org.flotilla.nats.0, .1, ... A VM
// has several, because during an upgrade two agents (the old one and its
// candidate) are connected at once and a port can be open in only one
// process at a time.
const DefaultPath = "/dev/virtio-ports/org.flotilla.nats.*"

// DefaultTimeout bounds one Dial when neither the Dialer nor the context
// says otherwise.
const DefaultTimeout = 5 * time.Second

// port is what a session needs of an open virtio-serial port (an *os.File
// in production; a socketpair or a fake in tests).
type port interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// openFunc opens one port path; it returns an error wrapping syscall.EBUSY
// when another process has the port open.
type openFunc func(path string) (port, error)

func openDevice(path string) (port, error) {
	// O_NONBLOCK makes the file pollable, so deadlines work.
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_NONBLOCK|syscall.O_CLOEXEC|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// sysfsRoot is where the kernel lists virtio ports by name; a variable for
// tests.
var (
	sysfsRoot = "/sys/class/virtio-ports"
	devRoot   = "/dev"
)

// resolve expands path (a device path or a glob) into candidate devices in
// a stable order. Names under /dev/virtio-ports/ are created by udev, which
// may run after the agent has started; the kernel's own list in sysfs maps
// the same names to /dev/vportNpM, so both are consulted.
func resolve(path string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return
		}
		if !seen[real] {
			seen[real] = true
			out = append(out, real)
		}
	}
	matches, _ := filepath.Glob(path)
	sort.Strings(matches)
	for _, m := range matches {
		add(m)
	}
	if filepath.Dir(path) != "/dev/virtio-ports" {
		return out
	}
	pattern := filepath.Base(path)
	dirs, _ := os.ReadDir(sysfsRoot)
	type named struct{ name, dev string }
	var found []named
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(sysfsRoot, d.Name(), "name"))
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(b))
		if ok, _ := filepath.Match(pattern, name); ok && name != "" {
			found = append(found, named{name, filepath.Join(devRoot, d.Name())})
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].name < found[j].name })
	for _, f := range found {
		add(f.dev)
	}
	return out
}

// Dialer opens NATS connections over virtio-serial ports. It implements
// nats.CustomDialer (and the context-aware variant nats.go prefers), so an
// agent connects with
//
//	nats.Connect("nats://vport", nats.SetCustomDialer(&vport.Dialer{}),
//	    nats.SkipHostLookup(), nats.RetryOnFailedConnect(true))
//
// The URL's host is ignored: the port path decides where the bytes go.
type Dialer struct {
	// Path is a device path or a glob of them; empty means DefaultPath.
	// The first port that no other process has open is used.
	Path string
	// Timeout bounds one Dial (open, HELLO, the host's ACK); zero means
	// DefaultTimeout.
	Timeout time.Duration

	open openFunc // tests; nil means openDevice
}

// Dial implements nats.CustomDialer; network and address are ignored.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext is Dial with a context.
func (d *Dialer) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	path := d.Path
	if path == "" {
		path = DefaultPath
	}
	open := d.open
	if open == nil {
		open = openDevice
	}
	return dial(ctx, path, open)
}

// SkipTLSHandshake tells nats.go not to wrap the connection in TLS: the
// channel never leaves the machine.
func (d *Dialer) SkipTLSHandshake() bool { return true }

// Dial opens the first free port matching path (a device path or a glob)
// and starts a session on it. It returns when the host has connected the
// session to its target, or with an error when ctx ends first.
func Dial(ctx context.Context, path string) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	return dial(ctx, path, openDevice)
}

func dial(ctx context.Context, path string, open openFunc) (net.Conn, error) {
	backoff := 50 * time.Millisecond
	var lastErr error
	for {
		candidates := resolve(path)
		if len(candidates) == 0 {
			lastErr = fmt.Errorf("vport: no port matches %s", path)
		}
		for _, p := range candidates {
			f, err := open(p)
			if errors.Is(err, syscall.EBUSY) {
				lastErr = fmt.Errorf("vport: %s is in use by another process", p)
				continue
			}
			if err != nil {
				lastErr = fmt.Errorf("vport: %w", err)
				continue
			}
			c, err := handshake(ctx, f, p)
			if err == nil {
				return c, nil
			}
			f.Close()
			lastErr = err
			if errors.Is(err, ErrSessionClosed) {
				// The host answered: the target is down. Don't try the
				// other ports, they lead to the same target.
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = ctx.Err()
			}
			return nil, fmt.Errorf("vport: dial %s: %w (last: %v)", path, ctx.Err(), lastErr)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func newSessionID() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("vport: crypto/rand: %v", err))
	}
	id := binary.BigEndian.Uint64(b[:])
	if id == 0 {
		id = 1
	}
	return id
}

// handshake sends HELLO on an open port and waits for the host's ACK of the
// same session, discarding whatever stale bytes come first.
func handshake(ctx context.Context, f port, path string) (*Conn, error) {
	deadline, _ := ctx.Deadline()
	c := &Conn{f: f, session: newSessionID(), path: path}
	c.fr = newFrameReader(f)
	// A write blocks while the host side of the channel is not connected;
	// the deadline bounds that wait.
	if err := f.SetWriteDeadline(deadline); err != nil {
		return nil, fmt.Errorf("vport: %s: set deadline: %w", path, err)
	}
	if _, err := f.Write(appendFrame(nil, frameHello, c.session, nil)); err != nil {
		return nil, fmt.Errorf("vport: %s: send HELLO: %w", path, err)
	}
	f.SetWriteDeadline(time.Time{})
	f.SetReadDeadline(deadline)
	defer f.SetReadDeadline(time.Time{})
	backoff := 20 * time.Millisecond
	for {
		fr, err := c.fr.next()
		switch {
		case errors.Is(err, io.EOF):
			// The port reads EOF while the host side is disconnected. It
			// does not block, so wait instead of spinning.
			if time.Until(deadline) <= 0 {
				return nil, fmt.Errorf("vport: %s: no ACK from the host: host side disconnected", path)
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("vport: %s: no ACK from the host: %w", path, ctx.Err())
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 500*time.Millisecond)
			continue
		case err != nil:
			return nil, fmt.Errorf("vport: %s: waiting for ACK: %w", path, err)
		}
		if fr.session != c.session {
			continue // stale bytes of an earlier session
		}
		switch fr.typ {
		case frameAck:
			return c, nil
		case frameClose:
			return nil, fmt.Errorf("%w: %s: %s", ErrSessionClosed, path, string(fr.payload))
		}
	}
}

// Conn is one session over a virtio-serial port. It is a net.Conn; reads
// see only the bytes of its own session.
type Conn struct {
	f       port
	path    string
	session uint64
	fr      *frameReader

	rmu     sync.Mutex
	pending []byte
	rerr    error

	wmu  sync.Mutex
	wbuf []byte

	closeOnce sync.Once
	closeErr  error
}

// Session is the session id this connection announced.
func (c *Conn) Session() uint64 { return c.session }

// Read returns payload bytes of this session. It returns io.EOF when the
// host ended the session or disconnected.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.pending) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		fr, err := c.fr.next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, err // the caller may retry after a deadline
			}
			if errors.Is(err, io.EOF) {
				// The host side went away; it has forgotten the session.
				c.rerr = io.EOF
			} else {
				c.rerr = err
			}
			return 0, c.rerr
		}
		if fr.session != c.session {
			continue
		}
		switch fr.typ {
		case frameData:
			c.pending = fr.payload
		case frameClose:
			c.rerr = io.EOF
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write sends p as DATA frames of this session.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	written := 0
	for len(p) > 0 {
		n := min(len(p), MaxPayload)
		c.wbuf = appendFrame(c.wbuf[:0], frameData, c.session, p[:n])
		if _, err := c.f.Write(c.wbuf); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// Close ends the session (telling the host, best effort) and closes the port
// so that the next process can open it.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.wmu.Lock()
		c.f.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		c.f.Write(appendFrame(nil, frameClose, c.session, nil))
		c.wmu.Unlock()
		c.closeErr = c.f.Close()
	})
	return c.closeErr
}

// Addr names a virtio-serial port.
type Addr struct{ Path string }

// Network returns "vport".
func (Addr) Network() string { return "vport" }

func (a Addr) String() string { return a.Path }

// LocalAddr returns the port's path.
func (c *Conn) LocalAddr() net.Addr { return Addr{c.path} }

// RemoteAddr returns the port's path (the host end has no other name).
func (c *Conn) RemoteAddr() net.Addr { return Addr{c.path} }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.f.SetReadDeadline(t); err != nil {
		return err
	}
	return c.f.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }
