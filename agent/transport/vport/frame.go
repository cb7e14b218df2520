// Package vport carries one NATS connection at a time over a virtio-serial
// port, with no IP network in between.
//
// A virtio-serial port is a single byte stream that outlives the processes
// at its two ends: bytes written by the host while no guest process has the
// port open are delivered to the next process that opens it, and a process
// killed half-way through a read leaves the rest of a message behind. A bare
// stream would hand those stale bytes to the next NATS connection. So the
// stream is framed, and every frame names the session it belongs to:
//
//	magic "\xf1VP1" | type u8 | session u64 | length u32 | payload | crc32c
//
// The guest side (Dial, Dialer) opens the port, picks a random session id,
// sends HELLO and waits for the host's ACK of that id; from then on it keeps
// only DATA frames of its own session. The host side (Bridge) connects the
// VM's unix-socket channel to a TCP address (the nats-server on 127.0.0.1):
// each HELLO opens a fresh TCP connection, superseding the previous one.
// A reader resynchronises on the magic and the checksum, so a torn frame
// costs nothing but the bytes of that frame.
//
// Use in the agent (config nats_vport = a port path or a glob, default
// DefaultPath):
//
//	nc, err := nats.Connect("nats://vport",
//	    nats.SetCustomDialer(&vport.Dialer{Path: cfg.NATSVport}),
//	    nats.SkipHostLookup(), nats.RetryOnFailedConnect(true))
//
// A port can be open in one process at a time, and during an upgrade the old
// agent and its candidate are connected at once, so a VM has several ports
// (org.flotilla.nats.0 .. .3) and the Dialer takes the first free one of
// those matching its Path. Use the glob, not one fixed port.
//
// On the host, one Bridge per port:
//
//	b := &vport.Bridge{Socket: "/run/flotilla/vm-a.nats.0.sock", Target: "127.0.0.1:4222"}
//	go b.Run(ctx)
package vport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Frame types.
const (
	frameHello byte = 1 // guest → host: a new session starts
	frameAck   byte = 2 // host → guest: the session is connected to the target
	frameData  byte = 3 // either way: payload bytes of the session
	frameClose byte = 4 // either way: the session is over (payload: reason)
)

// MaxPayload is the largest payload of one frame. The Linux virtio console
// driver accepts at most 32 KiB per write; a frame stays well below that.
const MaxPayload = 16 << 10

const (
	headerLen  = 4 + 1 + 8 + 4
	trailerLen = 4
)

var magic = [4]byte{0xf1, 'V', 'P', '1'}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type frame struct {
	typ     byte
	session uint64
	payload []byte
}

func typeName(t byte) string {
	switch t {
	case frameHello:
		return "HELLO"
	case frameAck:
		return "ACK"
	case frameData:
		return "DATA"
	case frameClose:
		return "CLOSE"
	}
	return fmt.Sprintf("type(%d)", t)
}

// appendFrame appends the encoding of one frame to dst.
func appendFrame(dst []byte, typ byte, session uint64, payload []byte) []byte {
	if len(payload) > MaxPayload {
		panic(fmt.Sprintf("vport: %s payload of %d bytes exceeds %d", typeName(typ), len(payload), MaxPayload))
	}
	start := len(dst)
	dst = append(dst, magic[:]...)
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint64(dst, session)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, payload...)
	sum := crc32.Checksum(dst[start+len(magic):], crcTable)
	return binary.BigEndian.AppendUint32(dst, sum)
}

// frameReader decodes frames from a byte stream that may contain garbage:
// stale halves of frames, bytes of an old session, anything. It never
// returns a frame whose checksum does not match.
type frameReader struct {
	r       io.Reader
	buf     []byte
	start   int // first unconsumed byte
	end     int // one past the last buffered byte
	skipped int64
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: r, buf: make([]byte, 2*(headerLen+MaxPayload+trailerLen))}
}

// Skipped reports how many bytes were discarded while resynchronising.
func (fr *frameReader) Skipped() int64 { return fr.skipped }

// fill reads at least once more into the buffer, compacting it first.
func (fr *frameReader) fill() error {
	if fr.start > 0 {
		copy(fr.buf, fr.buf[fr.start:fr.end])
		fr.end -= fr.start
		fr.start = 0
	}
	n, err := fr.r.Read(fr.buf[fr.end:])
	fr.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// next returns the next valid frame. Its payload is a fresh copy. The error
// is the underlying reader's (io.EOF, a deadline, a closed file).
func (fr *frameReader) next() (frame, error) {
	for {
		avail := fr.buf[fr.start:fr.end]
		i := bytes.Index(avail, magic[:])
		if i < 0 {
			// Keep a possible partial magic at the tail.
			keep := min(len(avail), len(magic)-1)
			fr.skipped += int64(len(avail) - keep)
			fr.start = fr.end - keep
			if err := fr.fill(); err != nil {
				return frame{}, err
			}
			continue
		}
		fr.skipped += int64(i)
		fr.start += i
		avail = fr.buf[fr.start:fr.end]
		if len(avail) < headerLen {
			if err := fr.fill(); err != nil {
				return frame{}, err
			}
			continue
		}
		typ := avail[4]
		session := binary.BigEndian.Uint64(avail[5:13])
		n := binary.BigEndian.Uint32(avail[13:17])
		if typ < frameHello || typ > frameClose || n > MaxPayload {
			fr.start++
			fr.skipped++
			continue
		}
		total := headerLen + int(n) + trailerLen
		if len(avail) < total {
			if err := fr.fill(); err != nil {
				return frame{}, err
			}
			continue
		}
		want := binary.BigEndian.Uint32(avail[total-trailerLen : total])
		if crc32.Checksum(avail[len(magic):total-trailerLen], crcTable) != want {
			fr.start++
			fr.skipped++
			continue
		}
		payload := make([]byte, n)
		copy(payload, avail[headerLen:headerLen+int(n)])
		fr.start += total
		return frame{typ: typ, session: session, payload: payload}, nil
	}
}

// ErrSessionClosed is returned by a guest connection's Dial when the host
// refused the session (for example, the target did not answer).
var ErrSessionClosed = errors.New("vport: session closed by the other side")
