package vport

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestFrameReaderResynchronises(t *testing.T) {
	good1 := appendFrame(nil, frameData, 7, []byte("first"))
	good2 := appendFrame(nil, frameClose, 7, []byte("bye"))
	hello := appendFrame(nil, frameHello, 9, nil)
	corrupt := bytes.Clone(good1)
	corrupt[len(corrupt)-6] ^= 0xff // payload byte flipped: checksum fails
	huge := appendFrame(nil, frameData, 7, nil)
	huge[13] = 0xff // length far beyond MaxPayload
	badType := bytes.Clone(hello)
	badType[4] = 99

	type want struct {
		typ     byte
		session uint64
		payload string
	}
	cases := []struct {
		name   string
		stream []byte
		want   []want
	}{
		{"clean stream", cat(good1, good2), []want{{frameData, 7, "first"}, {frameClose, 7, "bye"}}},
		{"garbage before", cat([]byte("PING\r\nstale bytes"), good1), []want{{frameData, 7, "first"}}},
		{"tail of a torn frame before", cat(good2[9:], good1), []want{{frameData, 7, "first"}}},
		{"head of a torn frame before", cat(good2[:len(good2)-3], good1), []want{{frameData, 7, "first"}}},
		{"corrupted frame skipped", cat(corrupt, good2), []want{{frameClose, 7, "bye"}}},
		{"absurd length skipped", cat(huge, good1), []want{{frameData, 7, "first"}}},
		{"unknown type skipped", cat(badType, hello), []want{{frameHello, 9, ""}}},
		{"magic inside garbage", cat(magic[:], magic[:3], good1), []want{{frameData, 7, "first"}}},
		{"only garbage", []byte("no frames here at all"), nil},
	}
	for _, tc := range cases {
		for _, reader := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{
			{"whole", func(r io.Reader) io.Reader { return r }},
			{"byte by byte", iotest.OneByteReader},
		} {
			t.Run(tc.name+"/"+reader.name, func(t *testing.T) {
				fr := newFrameReader(reader.wrap(bytes.NewReader(tc.stream)))
				var got []want
				for {
					f, err := fr.next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						t.Fatalf("next: %v", err)
					}
					got = append(got, want{f.typ, f.session, string(f.payload)})
				}
				if len(got) != len(tc.want) {
					t.Fatalf("got frames %+v, want %+v", got, tc.want)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Errorf("frame %d: got %+v, want %+v", i, got[i], tc.want[i])
					}
				}
			})
		}
	}
}

func TestFrameReaderMaxPayload(t *testing.T) {
	payload := bytes.Repeat([]byte{0xab}, MaxPayload)
	stream := cat(appendFrame(nil, frameData, 1, payload), appendFrame(nil, frameData, 1, payload[:10]))
	fr := newFrameReader(iotest.HalfReader(bytes.NewReader(stream)))
	for i, n := range []int{MaxPayload, 10} {
		f, err := fr.next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if len(f.payload) != n || !bytes.Equal(f.payload, payload[:n]) {
			t.Fatalf("frame %d: payload of %d bytes, want %d", i, len(f.payload), n)
		}
	}
	if fr.Skipped() != 0 {
		t.Errorf("skipped %d bytes of a clean stream", fr.Skipped())
	}
}

func TestAppendFrameRejectsOversizedPayload(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("appendFrame accepted a payload above MaxPayload")
		}
	}()
	appendFrame(nil, frameData, 1, make([]byte, MaxPayload+1))
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
