// Package journal is the agent's upgrade journal on disk: an append-only file
// of agentcore.Record values, one JSON document per line, each prefixed by
// the CRC-32C of its bytes. Every Append is fsynced before it returns, so the
// shell can execute the next effect knowing the record survives a power cut.
//
// A line that was being written when the process died (no trailing newline,
// or a CRC that does not match on the very last line) is a torn tail: readers
// drop it, and the first Append truncates it away before writing. A bad line
// anywhere else is corruption: Read skips it and returns the other records together
// with an error that names the line.
//
// Line format:
//
//	1a2b3c4d {"kind":"begin","attempt":3,"from":"v1.0.0","to":"v2.0.0"}
package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
)

// MaxRecordBytes bounds one encoded record.
const MaxRecordBytes = 16 << 10

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// CorruptError reports a bad record that is not the torn tail.
type CorruptError struct {
	Path string
	Line int
	Why  string
}

func (e *CorruptError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("journal: line %d is corrupt: %s", e.Line, e.Why)
	}
	return fmt.Sprintf("journal %s: line %d is corrupt: %s", e.Path, e.Line, e.Why)
}

// Journal appends records to one file. It opens the file for writing lazily,
// on the first Append, so that a process that only reads (an upgrade
// candidate polling the old agent's journal) never truncates a record that
// the writer is still writing.
type Journal struct {
	path string

	mu sync.Mutex
	f  *os.File
}

// New returns a journal at path; nothing is opened or created yet.
func New(path string) *Journal { return &Journal{path: path} }

// Path returns the file's path.
func (j *Journal) Path() string { return j.path }

// Read returns every intact record (see Read).
func (j *Journal) Read() ([]agentcore.Record, error) { return Read(j.path) }

// Append writes r and fsyncs the file. The first call repairs a torn tail
// and creates the file (fsyncing its directory) when missing.
func (j *Journal) Append(r agentcore.Record) error {
	line, err := Encode(r)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		f, err := openForAppend(j.path)
		if err != nil {
			return err
		}
		j.f = f
	}
	if _, err := j.f.Write(line); err != nil {
		return fmt.Errorf("journal %s: append %s: %w", j.path, r.Kind, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal %s: fsync after %s: %w", j.path, r.Kind, err)
	}
	return nil
}

// Close closes the file if it was opened.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// Encode renders one record as a journal line, newline included.
func Encode(r agentcore.Record) ([]byte, error) { return AppendRecord(nil, r) }

// AppendRecord appends r to buf as one journal line (CRC, space, JSON,
// newline): the bytes Append writes to the file. The simulator keeps its
// devices' journals as these bytes.
func AppendRecord(buf []byte, r agentcore.Record) ([]byte, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return buf, fmt.Errorf("journal: encode %s record: %w", r.Kind, err)
	}
	if len(body) > MaxRecordBytes {
		return buf, fmt.Errorf("journal: %s record is %d bytes; the limit is %d", r.Kind, len(body), MaxRecordBytes)
	}
	buf = slices.Grow(buf, len(body)+10)
	buf = fmt.Appendf(buf, "%08x ", crc32.Checksum(body, crcTable))
	buf = append(buf, body...)
	return append(buf, '\n'), nil
}

// Decode returns the intact records of a journal's bytes, exactly as Read
// does for the file: a torn tail is dropped silently; a bad line before the
// tail is skipped and reported as a *CorruptError (with an empty Path)
// alongside the other records.
func Decode(data []byte) ([]agentcore.Record, error) {
	recs, _, err := parse("", data)
	return recs, err
}

// IntactLen is the length of data without its torn tail: what the first
// Append of a process keeps of the file (corruption before the tail stays).
func IntactLen(data []byte) int {
	_, good, _ := parse("", data)
	return good
}

// Scan is Decode that also returns IntactLen. A reader that keeps what it
// decoded can scan only the bytes appended since: data[:intact] ends at a
// line boundary, and the lines after it decode the same on their own (a
// *CorruptError then counts lines from there).
func Scan(data []byte) (recs []agentcore.Record, intact int, err error) {
	return parse("", data)
}

// Usable is the start-up decision on what Read or Decode returned: the
// records are usable when err is nil or a *CorruptError (a bad line in the
// middle is skipped and left for a human; the agent carries on with the
// intact records). Any other error (the file could not be read) is not.
// agent/shell and the simulator decide with this one function.
func Usable(err error) bool {
	var ce *CorruptError
	return err == nil || errors.As(err, &ce)
}

// Read returns the intact records of the journal at path. A missing file is
// an empty journal. A torn tail is dropped silently; a bad line before the
// tail is skipped and reported as a *CorruptError alongside the records.
func Read(path string) ([]agentcore.Record, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	recs, _, err := parse(path, data)
	return recs, err
}

// parse decodes data. It returns the intact records, the length of data
// without its torn tail, and the first corruption found before the tail (bad
// lines there are skipped, so records appended after them stay visible).
func parse(path string, data []byte) ([]agentcore.Record, int, error) {
	var recs []agentcore.Record
	var corrupt error
	off := 0
	for lineNo := 1; off < len(data); lineNo++ {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			return recs, off, corrupt // torn tail: no newline yet
		}
		line := data[off : off+nl]
		last := off+nl+1 == len(data)
		r, err := decodeLine(line)
		if err != nil {
			if last {
				return recs, off, corrupt // torn tail: the final line did not make it whole
			}
			if corrupt == nil {
				corrupt = &CorruptError{Path: path, Line: lineNo, Why: err.Error()}
			}
		} else {
			recs = append(recs, r)
		}
		off += nl + 1
	}
	return recs, off, corrupt
}

func decodeLine(line []byte) (agentcore.Record, error) {
	var r agentcore.Record
	if len(line) < 10 || line[8] != ' ' {
		return r, errors.New("want '<crc32c hex> <json>'")
	}
	want, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil {
		return r, fmt.Errorf("bad CRC field %q", line[:8])
	}
	body := line[9:]
	if got := crc32.Checksum(body, crcTable); uint32(want) != got {
		return r, fmt.Errorf("CRC mismatch: stored %08x, computed %08x", want, got)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("record does not decode: %v", err)
	}
	if r.Kind == "" {
		return r, errors.New("record has no kind")
	}
	return r, nil
}

// openForAppend opens (creating) the journal, truncating a torn tail first.
func openForAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal %s: open: %w", path, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal %s: read: %w", path, err)
	}
	// Corruption before the tail is left in place for a human to inspect
	// (readers skip it and report it); only the torn tail is cut.
	_, good, _ := parse(path, data)
	if good < len(data) {
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return nil, fmt.Errorf("journal %s: drop torn tail: %w", path, err)
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal %s: seek: %w", path, err)
	}
	if len(data) == 0 {
		if err := SyncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// SyncDir fsyncs a directory so that entries created or renamed in it are
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}
