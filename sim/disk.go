package sim

import (
	"slices"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
)

// Disk is one device's simulated disk: versions/<v>/ directories, the
// current link and the upgrade journal.
//
// Durability follows agent/agentcore/api.go: a journal record is durable
// once its AppendJournal completed (fsynced); a SwapCurrent is durable once
// it completed (rename + directory fsync). A power cut while one of these is
// in flight loses it, or tears it: a torn journal record is dropped by the
// reader; a torn swap leaves either link (rename is atomic); a torn copy or
// download leaves an incomplete directory, which is never runnable.
type Disk struct {
	journal    []agentcore.Record
	tornTail   bool
	current    core.Version
	hasCurrent bool
	versions   []verDir
	full       bool // disk-full: downloads fail
}

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

// ReadJournal returns the durable records, as the reader sees them (a torn
// tail dropped). The slice is clipped so that appends never alias.
func (d *Disk) ReadJournal() []agentcore.Record {
	return slices.Clip(d.journal)
}

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

// append makes one record durable.
func (d *Disk) append(r agentcore.Record) {
	d.tornTail = false
	d.journal = append(d.journal, r)
}

// mount is what a reboot's reader does: drop a torn tail.
func (d *Disk) mount() { d.tornTail = false }
