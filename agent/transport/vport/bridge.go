package vport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Bridge is the host side of one virtio-serial channel: it connects to the
// unix socket QEMU listens on for that channel and, for every session the
// guest starts, opens a fresh TCP connection to Target and copies bytes both
// ways. It reconnects to the socket when QEMU goes away (the VM was
// destroyed) and comes back (the VM was started again).
type Bridge struct {
	// Socket is the path of the channel's unix socket (libvirt
	// <channel type='unix'><source mode='bind' path=.../>).
	Socket string
	// Target is the TCP address sessions are connected to, e.g. the
	// embedded nats-server's 127.0.0.1:port.
	Target string
	// Log receives connection events; nil means slog.Default().
	Log *slog.Logger

	sessions atomic.Int64
	stale    atomic.Int64
}

// Sessions reports how many sessions the bridge has connected so far.
func (b *Bridge) Sessions() int64 { return b.sessions.Load() }

// StaleFrames reports how many frames of unknown or superseded sessions
// the bridge has dropped.
func (b *Bridge) StaleFrames() int64 { return b.stale.Load() }

func (b *Bridge) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.Default()
}

// Run serves the channel until ctx ends. It returns ctx's error.
func (b *Bridge) Run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", b.Socket)
		if err == nil {
			backoff = 50 * time.Millisecond
			b.log().Debug("vport bridge: channel connected", "socket", b.Socket)
			b.serve(ctx, conn)
			b.log().Debug("vport bridge: channel disconnected", "socket", b.Socket)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// session is the guest's live session on the channel and its TCP side.
type session struct {
	id  uint64
	tcp net.Conn
}

// serve runs one connection to the channel socket until it ends.
func (b *Bridge) serve(ctx context.Context, ch net.Conn) {
	var wmu sync.Mutex
	send := func(typ byte, id uint64, payload []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := ch.Write(appendFrame(nil, typ, id, payload))
		return err
	}
	var (
		mu  sync.Mutex
		cur *session
		wg  sync.WaitGroup
	)
	endCurrent := func() {
		mu.Lock()
		s := cur
		cur = nil
		mu.Unlock()
		if s != nil {
			s.tcp.Close()
		}
	}
	stop := context.AfterFunc(ctx, func() { ch.Close() })
	defer func() {
		stop()
		ch.Close()
		endCurrent()
		wg.Wait()
	}()

	// closed remembers sessions already told to go away, so a burst of
	// stale DATA costs one CLOSE.
	closed := map[uint64]bool{}
	fr := newFrameReader(ch)
	for {
		f, err := fr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				b.log().Warn("vport bridge: reading channel", "socket", b.Socket, "err", err)
			}
			return
		}
		switch f.typ {
		case frameHello:
			endCurrent()
			var d net.Dialer
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			tcp, err := d.DialContext(dctx, "tcp", b.Target)
			cancel()
			if err != nil {
				b.log().Warn("vport bridge: target unreachable", "socket", b.Socket, "target", b.Target, "err", err)
				closed[f.session] = true
				send(frameClose, f.session, []byte(fmt.Sprintf("target %s: %v", b.Target, err)))
				continue
			}
			s := &session{id: f.session, tcp: tcp}
			mu.Lock()
			cur = s
			mu.Unlock()
			b.sessions.Add(1)
			b.log().Debug("vport bridge: session", "socket", b.Socket, "session", fmt.Sprintf("%016x", f.session))
			if err := send(frameAck, s.id, nil); err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.pump(s, send)
				mu.Lock()
				still := cur == s
				if still {
					cur = nil
				}
				mu.Unlock()
				if still {
					send(frameClose, s.id, []byte("target closed the connection"))
				}
			}()
		case frameData:
			mu.Lock()
			s := cur
			mu.Unlock()
			if s == nil || s.id != f.session {
				b.stale.Add(1)
				if !closed[f.session] {
					closed[f.session] = true
					send(frameClose, f.session, []byte("unknown session"))
				}
				continue
			}
			if _, err := s.tcp.Write(f.payload); err != nil {
				endCurrent()
				closed[f.session] = true
				send(frameClose, f.session, []byte("target write failed"))
			}
		case frameClose:
			closed[f.session] = true
			mu.Lock()
			s := cur
			if s != nil && s.id == f.session {
				cur = nil
			} else {
				s = nil
			}
			mu.Unlock()
			if s != nil {
				s.tcp.Close()
			}
		default:
			b.stale.Add(1) // ACK never travels guest → host
		}
		if len(closed) > 1024 {
			clear(closed)
		}
	}
}

// pump copies the target's bytes into DATA frames until the target closes.
func (b *Bridge) pump(s *session, send func(byte, uint64, []byte) error) {
	buf := make([]byte, MaxPayload)
	for {
		n, err := s.tcp.Read(buf)
		if n > 0 {
			if werr := send(frameData, s.id, buf[:n]); werr != nil {
				s.tcp.Close()
				return
			}
		}
		if err != nil {
			return
		}
	}
}
