package journal

import (
	"errors"
	"os"
	"path/filepath"
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
