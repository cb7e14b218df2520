package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
)

func recs() []agentcore.Record {
	v1, v2 := core.MustParseVersion("v1.0.0"), core.MustParseVersion("v2.0.0")
	return []agentcore.Record{
		{Kind: agentcore.RecInstalled, To: v1},
		{Kind: agentcore.RecBegin, Attempt: 1, From: v1, To: v2},
		{Kind: agentcore.RecFailed, Attempt: 1, From: v1, To: v2, Reason: core.ReasonChecksumMismatch, Detail: "sha256 abc != def"},
	}
}

func TestAppendThenReadRoundTrips(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j := New(path)
	for _, r := range recs() {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2].Reason != core.ReasonChecksumMismatch || got[1].To.String() != "v2.0.0" {
		t.Fatalf("read back %+v", got)
	}
}

func TestMissingJournalIsEmpty(t *testing.T) {
	got, err := Read(filepath.Join(t.TempDir(), "nope"))
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestTornTailAndCorruption(t *testing.T) {
	var whole []byte
	for _, r := range recs()[:2] {
		l, _ := Encode(r)
		whole = append(whole, l...)
	}
	third, _ := Encode(recs()[2])
	flipped := append([]byte(nil), third...)
	flipped[20] ^= 0x01
	cases := []struct {
		name        string
		data        []byte
		want        int
		wantCorrupt bool
	}{
		{"intact", append(append([]byte(nil), whole...), third...), 3, false},
		{"torn without newline", append(append([]byte(nil), whole...), third[:len(third)/2]...), 2, false},
		{"last line bad CRC", append(append([]byte(nil), whole...), flipped...), 2, false},
		{"bad line in the middle", append(append(append([]byte(nil), whole[:len(whole)/2]...), '\n'), third...), 2, true},
		{"garbage only", []byte("hello\n"), 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal")
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := Read(path)
			var ce *CorruptError
			if errors.As(err, &ce) != c.wantCorrupt {
				t.Fatalf("err = %v, want corrupt=%v", err, c.wantCorrupt)
			}
			if len(got) != c.want {
				t.Fatalf("got %d records, want %d", len(got), c.want)
			}
			// Appending after a torn tail must leave a readable journal.
			j := New(path)
			if err := j.Append(agentcore.Record{Kind: agentcore.RecCommitted, Attempt: 9}); err != nil {
				t.Fatal(err)
			}
			j.Close()
			after, _ := Read(path)
			if len(after) != c.want+1 || after[len(after)-1].Attempt != 9 {
				t.Fatalf("after append: %+v", after)
			}
		})
	}
}

// BenchmarkAppend measures one durable append (write + fsync): the cost the
// shell pays before every effect that follows a journal record.
func BenchmarkAppend(b *testing.B) {
	j := New(filepath.Join(b.TempDir(), "journal"))
	defer j.Close()
	r := agentcore.Record{Kind: agentcore.RecBegin, Attempt: 1, From: core.MustParseVersion("v1.0.0"), To: core.MustParseVersion("v2.0.0")}
	for b.Loop() {
		if err := j.Append(r); err != nil {
			b.Fatal(err)
		}
	}
}

// The byte path (AppendRecord, Decode, IntactLen) is what the simulator
// keeps its devices' journals in: it must read bytes exactly as Read reads
// the same bytes from a file, torn tail and corruption included.
func TestDecodeBytesAsReadDoesTheFile(t *testing.T) {
	var whole []byte
	for _, r := range recs() {
		var err error
		if whole, err = AppendRecord(whole, r); err != nil {
			t.Fatal(err)
		}
	}
	lines := bytes.SplitAfter(whole, []byte("\n")) // 3 lines and an empty rest
	flip := func(line []byte, at int) []byte {
		c := append([]byte(nil), line...)
		c[at] ^= 0x04
		return c
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := []struct {
		name        string
		data        []byte
		want        int // records
		wantLen     int // IntactLen
		wantCorrupt int // line named by the CorruptError (0: none)
	}{
		{"empty", nil, 0, 0, 0},
		{"intact", whole, 3, len(whole), 0},
		{"torn: one byte of the last record", cat(lines[0], lines[1], lines[2][:1]), 2, len(lines[0]) + len(lines[1]), 0},
		{"torn: all but the newline", cat(lines[0], lines[1], lines[2][:len(lines[2])-1]), 2, len(lines[0]) + len(lines[1]), 0},
		{"last line with a flipped bit", cat(lines[0], lines[1], flip(lines[2], 30)), 2, len(lines[0]) + len(lines[1]), 0},
		{"middle line with a flipped bit", cat(lines[0], flip(lines[1], 30), lines[2]), 2, len(whole), 2},
		{"first line with a bad CRC field", cat(flip(lines[0], 2), lines[1], lines[2]), 2, len(whole), 1},
		{"corrupt middle and torn tail", cat(lines[0], flip(lines[1], 30), lines[2][:5]), 1, len(lines[0]) + len(lines[1]), 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode(c.data)
			var ce *CorruptError
			if gotCorrupt := errors.As(err, &ce); gotCorrupt != (c.wantCorrupt != 0) || (gotCorrupt && ce.Line != c.wantCorrupt) {
				t.Fatalf("err = %v, want corruption on line %d", err, c.wantCorrupt)
			}
			if err != nil && !Usable(err) {
				t.Fatalf("a corrupt journal is not usable at start-up: %v", err)
			}
			if len(got) != c.want {
				t.Fatalf("decoded %d records, want %d: %+v", len(got), c.want, got)
			}
			if n := IntactLen(c.data); n != c.wantLen {
				t.Fatalf("IntactLen = %d, want %d", n, c.wantLen)
			}
			// The file reader agrees record for record and error for error.
			path := filepath.Join(t.TempDir(), "journal")
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			fromFile, ferr := Read(path)
			if len(fromFile) != len(got) || (ferr == nil) != (err == nil) {
				t.Fatalf("Read: %d records, %v; Decode: %d records, %v", len(fromFile), ferr, len(got), err)
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], fromFile[i]) {
					t.Fatalf("record %d: Decode %+v, Read %+v", i, got[i], fromFile[i])
				}
			}
		})
	}
}

func TestAppendRecordWritesTheLinesAppendWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j := New(path)
	var buf []byte
	for _, r := range recs() {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
		var err error
		if buf, err = AppendRecord(buf, r); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, buf) {
		t.Fatalf("file:\n%s\nAppendRecord:\n%s", file, buf)
	}
	big := agentcore.Record{Kind: agentcore.RecFailed, Detail: strings.Repeat("x", MaxRecordBytes)}
	if out, err := AppendRecord(buf, big); err == nil || len(out) != len(buf) {
		t.Fatalf("an oversized record: err %v, buffer grew from %d to %d bytes", err, len(buf), len(out))
	}
}

func TestUsableOnlyForCorruption(t *testing.T) {
	if !Usable(nil) || !Usable(&CorruptError{Line: 2, Why: "CRC mismatch"}) {
		t.Fatal("nil or a corrupt line must let the agent start with the intact records")
	}
	if Usable(fmt.Errorf("journal /x: %w", os.ErrPermission)) {
		t.Fatal("an unreadable journal must stop the start")
	}
	if got := (&CorruptError{Line: 2, Why: "CRC mismatch"}).Error(); got != "journal: line 2 is corrupt: CRC mismatch" {
		t.Fatalf("message %q", got)
	}
}
