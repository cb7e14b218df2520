package sim

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"syscall"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/agent/journal"
	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/sim/kernel"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Disk is one device's simulated disk: versions/<v>/ directories, the
// current link and the upgrade journal.
//
// The journal is kept as the bytes the production journal writes
// (journal.AppendRecord) and read back with the production reader
// (journal.Decode), so its torn-tail and corrupt-middle paths run here.
//
// Durability follows agent/agentcore/api.go: a journal record is durable
// once its AppendJournal completed (fsynced); a SwapCurrent is durable once
// it completed (rename + directory fsync). A power cut while one of these is
// in flight loses it, or tears it: a torn journal append leaves a prefix of
// the record's line, which the reader drops and the next process's first
// append cuts away; a torn swap leaves either link (rename is atomic); a
// torn copy or download leaves an incomplete directory, which is never
// runnable.
//
// The disk is cheap: 100,000 devices have one each. The journal is touched
// only by journal appends and reads (start-up, a candidate's poll), never
// by a heartbeat.
type Disk struct {
	journal    []byte // the journal file's bytes
	torn       bool   // journal may end in a torn tail (cut by the next append)
	current    core.Version
	hasCurrent bool
	versions   []verDir
	full       bool // disk-full: journal appends and downloads fail with ENOSPC

	// What the reader made of journal[:readLen] (whole lines), kept while
	// the bytes only grow: a candidate polls the journal every few hundred
	// milliseconds during a cutover, and every line is decoded once.
	read      []agentcore.Record
	readErr   error // the first corruption in journal[:readLen]
	readLen   int
	readLines int
}

// errNoSpace is what a write to a full disk returns, wrapped as
// journal.Journal.Append wraps it.
var errNoSpace error = syscall.ENOSPC

type verDir struct {
	v        core.Version
	complete bool
	verified bool // preserved from a running agent or passed its self-test
}

func (d *Disk) find(v core.Version) int {
	for i := range d.versions {
		if d.versions[i].v.Compare(v) == 0 && d.versions[i].v.String() == v.String() {
			return i
		}
	}
	return -1
}

// Current implements check.Disk.
func (d *Disk) Current() (core.Version, bool) { return d.current, d.hasCurrent }

// Runnable implements check.Disk.
func (d *Disk) Runnable(v core.Version) bool {
	i := d.find(v)
	return i >= 0 && d.versions[i].complete && d.versions[i].verified
}

// Complete reports whether versions/<v> is fully written.
func (d *Disk) Complete(v core.Version) bool {
	i := d.find(v)
	return i >= 0 && d.versions[i].complete
}

func (d *Disk) dir(v core.Version) *verDir {
	if i := d.find(v); i >= 0 {
		return &d.versions[i]
	}
	d.versions = append(d.versions, verDir{v: v})
	return &d.versions[len(d.versions)-1]
}

func (d *Disk) remove(v core.Version) {
	if i := d.find(v); i >= 0 {
		d.versions = slices.Delete(d.versions, i, i+1)
	}
}

// ReadJournal returns the records the production reader finds in the
// journal's bytes: a torn tail is dropped; a corrupt line in the middle is
// skipped and the intact records are used, the decision agent/shell's
// start-up makes (journal.Usable). The slice is clipped so that appends
// never alias; callers must not modify its records.
func (d *Disk) ReadJournal() []agentcore.Record {
	recs, err := d.readJournal()
	if !journal.Usable(err) {
		// agent/shell's start-up stops here (exit status 1); bytes in
		// memory always read, so only a *CorruptError gets this far.
		return nil
	}
	return recs
}

// readJournal is ReadJournal with the reader's error (a *journal.CorruptError
// or nil: bytes in memory cannot fail to be read).
func (d *Disk) readJournal() ([]agentcore.Record, error) {
	if d.readLen < len(d.journal) {
		tail := d.journal[d.readLen:]
		recs, good, err := journal.Scan(tail)
		var ce *journal.CorruptError
		if d.readErr == nil && errors.As(err, &ce) {
			shifted := *ce
			shifted.Line += d.readLines
			d.readErr = &shifted
		}
		if len(recs) > 0 {
			d.read = slices.Clip(append(d.read, recs...)) // never aliases a slice handed out
		}
		d.readLen += good
		d.readLines += bytes.Count(tail[:good], []byte{'\n'})
	}
	return d.read, d.readErr
}

// intactLen is journal.IntactLen of the journal, scanning only what the
// reader has not seen.
func (d *Disk) intactLen() int {
	return d.readLen + journal.IntactLen(d.journal[d.readLen:])
}

// changed forgets what the reader made of the bytes: some of them changed.
func (d *Disk) changed() { d.read, d.readErr, d.readLen, d.readLines = nil, nil, 0, 0 }

// Installed lists the complete version directories, oldest first.
func (d *Disk) Installed() []core.Version {
	out := make([]core.Version, 0, len(d.versions))
	for _, v := range d.versions {
		if v.complete {
			out = append(out, v.v)
		}
	}
	slices.SortFunc(out, func(a, b core.Version) int { return a.Compare(b) })
	return out
}

// append makes one record durable, or fails as a write to the journal file
// would: ENOSPC on a full disk (nothing written), or a record the encoder
// refuses. The first append after a torn tail cuts the tail away first, as
// the production journal's first Append of a process does.
func (d *Disk) append(r agentcore.Record) error {
	if d.torn {
		d.journal = d.journal[:d.intactLen()] // only bytes past readLen go
		d.torn = false
	}
	if d.full {
		return fmt.Errorf("journal: append %s: write journal: %w", r.Kind, errNoSpace)
	}
	b, err := journal.AppendRecord(d.journal, r)
	if err != nil {
		return err
	}
	d.journal = b
	return nil
}

// tear is a power cut during the append of r. Either a prefix of its line
// reached the disk (at least one byte, never the newline), or, as with
// delayed allocation, the file grew by the whole line but some of its
// blocks never got their data (a run of zero bytes in the line; the
// newline made it). The reader drops both as a torn tail: the first has no
// newline, the second is a final line that does not check. Which one, and
// how long, is a function of the journal's bytes: a tear draws from no random
// stream.
func (d *Disk) tear(r agentcore.Record) {
	if d.full {
		return // the write failed before any byte landed
	}
	if d.torn {
		d.journal = d.journal[:d.intactLen()]
	}
	n := len(d.journal)
	b, err := journal.AppendRecord(d.journal, r)
	if err != nil {
		return
	}
	line := b[n:]
	h := crc32.ChecksumIEEE(b) // the whole file: devices with different histories tear differently
	keep := 1 + int(h%uint32(len(line)-1))
	if h%4 == 0 {
		// Whole length, a hole from keep on (the newline stays).
		clear(line[keep : len(line)-1])
		keep = len(line)
	}
	d.journal = b[:n+keep]
	d.torn = true
}

// corruptJournal flips one bit in the body of a record in the middle of the
// journal (never the last line, so the reader reports corruption instead of
// dropping a torn tail). It reports whether the journal had a middle record
// to flip: at least two whole lines.
func (d *Disk) corruptJournal() bool {
	good := d.journal[:d.intactLen()]
	var starts []int
	for off := 0; off < len(good); {
		starts = append(starts, off)
		nl := bytes.IndexByte(good[off:], '\n')
		if nl < 0 {
			break
		}
		off += nl + 1
	}
	if len(starts) < 2 {
		return false
	}
	i := (len(starts) - 1) / 2 // a middle line, never the last
	start, end := starts[i], starts[i+1]-1
	body := start + 9 // past "crc32c " (8 hex digits and a space)
	if body >= end {
		return false
	}
	d.journal[body+(end-body)/2] ^= 0x04
	d.changed()
	return true
}

// mount is what a reboot does to the disk: nothing; the journal's reader
// drops a torn tail and the next append cuts it.
func (d *Disk) mount() {}

// ---- disk faults ------------------------------------------------------------------

// diskFaultEvent starts or ends a disk fault on some devices.
type diskFaultEvent struct {
	w    *World
	f    *scenario.Fault
	devs []int32
	on   bool
}

// scheduleDiskFault puts a disk fault on the heap (setupFaults' hook):
// disk-full from at to at+for; journal-corrupt once, at at.
func (w *World) scheduleDiskFault(f *scenario.Fault, devs []int32) {
	w.k.At(f.At.D, kernel.Event{Target: &diskFaultEvent{w: w, f: f, devs: devs, on: true}})
	if f.Kind == scenario.FaultDiskFull {
		w.k.At(f.At.D+f.For.D, kernel.Event{Target: &diskFaultEvent{w: w, f: f, devs: devs, on: false}})
	}
}

// Handle implements kernel.Handler.
func (e *diskFaultEvent) Handle(k *kernel.Kernel, _ *kernel.Event) {
	w := e.w
	for _, i := range e.devs {
		d := w.devs[i]
		switch e.f.Kind {
		case scenario.FaultDiskFull:
			d.disk.full = e.on
			if e.on {
				w.fired(e.f.Kind)
			}
		case scenario.FaultJournalCorrupt:
			// Found by the next reader: a restart, or a candidate's poll.
			if d.disk.corruptJournal() {
				w.fired(e.f.Kind)
				if k.Tracing() {
					k.TraceText(d.name + " disk journal-corrupt")
				}
			}
		}
	}
}
