package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/agent/journal"
	"github.com/flotilla-fleet/flotilla/core"
)

func journalRecs() []agentcore.Record {
	return []agentcore.Record{
		{Kind: agentcore.RecInstalled, To: v10},
		{Kind: agentcore.RecBegin, Attempt: 1, From: v10, To: v11},
		{Kind: agentcore.RecStaged, Attempt: 1, From: v10, To: v11},
	}
}

// The disk holds the journal file's bytes: what the production Journal
// writes for the same records.
func TestDiskJournalIsTheProductionBytes(t *testing.T) {
	var d Disk
	var want []byte
	for _, r := range journalRecs() {
		if err := d.append(r); err != nil {
			t.Fatal(err)
		}
		want, _ = journal.AppendRecord(want, r)
	}
	if string(d.journal) != string(want) {
		t.Fatalf("disk journal:\n%s\nwant:\n%s", d.journal, want)
	}
	if got := d.ReadJournal(); len(got) != 3 || got[2].Kind != agentcore.RecStaged {
		t.Fatalf("read back %+v", got)
	}
}

// A torn append leaves a prefix; the reader drops it and the next append
// cuts it away, so nothing after it is ever lost or corrupt.
func TestDiskTornAppendIsCutByTheNextAppend(t *testing.T) {
	holes, prefixes := 0, 0
	for attempt := uint32(1); attempt <= 40; attempt++ {
		var d Disk
		rs := journalRecs()
		d.append(rs[0])
		intact := len(d.journal)
		torn := rs[1]
		torn.Attempt = attempt // a different line: a different tear
		d.tear(torn)
		if d.journal[len(d.journal)-1] == '\n' {
			holes++
		} else {
			prefixes++
		}
		if len(d.journal) <= intact {
			t.Fatalf("attempt %d: the tear left no bytes", attempt)
		}
		if recs, err := d.readJournal(); err != nil || len(recs) != 1 {
			t.Fatalf("attempt %d: after a torn append: %d records, %v", attempt, len(recs), err)
		}
		d.append(rs[2])
		recs, err := d.readJournal()
		if err != nil || len(recs) != 2 || recs[1].Kind != agentcore.RecStaged {
			t.Fatalf("attempt %d: after the next append: %+v, %v", attempt, recs, err)
		}
	}
	if holes == 0 || prefixes == 0 {
		t.Fatalf("tears: %d whole-length lines with a hole, %d prefixes; want both kinds", holes, prefixes)
	}
}

// journal-corrupt flips a bit in a middle record: the production reader
// reports it and returns the others, and start-up carries on with them.
func TestDiskCorruptMiddleRecord(t *testing.T) {
	var d Disk
	for _, r := range journalRecs() {
		d.append(r)
	}
	if !d.corruptJournal() {
		t.Fatal("three records and nothing to corrupt")
	}
	recs, err := d.readJournal()
	var ce *journal.CorruptError
	if !errors.As(err, &ce) || ce.Line != 2 {
		t.Fatalf("want line 2 reported corrupt, got %v", err)
	}
	if len(recs) != 2 || recs[0].Kind != agentcore.RecInstalled || recs[1].Kind != agentcore.RecStaged {
		t.Fatalf("intact records %+v", recs)
	}
	if got := d.ReadJournal(); len(got) != 2 {
		t.Fatalf("start-up sees %d records, want the 2 intact ones", len(got))
	}
	// The corruption stays (for a human); appends after it stay readable.
	d.append(agentcore.Record{Kind: agentcore.RecCommitted, Attempt: 1})
	if recs, _ := d.readJournal(); len(recs) != 3 || recs[2].Kind != agentcore.RecCommitted {
		t.Fatalf("after an append: %+v", recs)
	}
	var one Disk
	one.append(journalRecs()[0])
	if one.corruptJournal() {
		t.Fatal("a one-record journal has no middle record")
	}
}

func TestDiskFullFailsAppendsWithENOSPC(t *testing.T) {
	var d Disk
	d.append(journalRecs()[0])
	d.full = true
	err := d.append(journalRecs()[1])
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("append on a full disk: %v", err)
	}
	d.tear(journalRecs()[1])
	d.full = false
	if recs, err := d.readJournal(); err != nil || len(recs) != 1 {
		t.Fatalf("a failed append left %d records, %v", len(recs), err)
	}
}

// disk-full: every journal append fails, so the agent exits (status 3) and
// systemd starts it again, until the space is back; then the upgrade goes
// through and every device ends on a verified version.
func TestDiskFullCrashLoopsTheAgentUntilSpaceIsBack(t *testing.T) {
	src := `name: full
duration: 2h
fleet: {devices: 3, agent_version: v1.0.0}
steps:
  - {at: 30s, upgrade_agent: {version: v1.1.0}}
faults:
  - {kind: disk-full, at: 20s, for: 2m}
expect:
  converged_within: 30m
  agent_version: {v1.1.0: "100%"}
`
	w, err := New(mustScenario(t, src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := w.Run()
	if !r.Passed || r.FaultsFired["disk-full"] != 3 {
		t.Fatalf("passed=%v fired=%v violations=%v expectations=%v", r.Passed, r.FaultsFired, r.Violations, r.Expectations)
	}
	for _, d := range w.devs {
		// One start before the fault, one process per attempted upgrade
		// step after it; a crash loop every 2 s over 90 s is many more.
		if d.pids < 20 || d.boots != 0 {
			t.Errorf("%s: %d processes over %d boots; want a restart loop without a reboot", d.name, d.pids, d.boots)
		}
		if d.disk.full {
			t.Errorf("%s: disk still full after the window", d.name)
		}
	}
	if r.ConvergedAtSeconds < 140 {
		t.Fatalf("converged at %vs, before the disk had space again", r.ConvergedAtSeconds)
	}
}

// The disk decodes each line once (readJournal keeps what it decoded while
// the bytes only grow); whatever the sequence of appends, tears, failed
// appends and bit flips, it must read what journal.Decode reads from the
// whole file.
func TestDiskReadsAsDecodeOfTheWholeJournal(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for run := 0; run < 200; run++ {
		var d Disk
		for op := 0; op < 30; op++ {
			r := agentcore.Record{Kind: agentcore.RecBegin, Attempt: uint32(op + 1), From: v10, To: v11}
			switch rng.IntN(6) {
			case 0:
				d.tear(r)
			case 1:
				d.corruptJournal()
			case 2:
				d.full = !d.full
				d.append(r)
			default:
				d.append(r)
			}
			if rng.IntN(2) == 0 {
				continue // not every change is read at once
			}
			got, gerr := d.readJournal()
			want, werr := journal.Decode(d.journal)
			if !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
				t.Fatalf("run %d op %d: read %d records, Decode %d", run, op, len(got), len(want))
			}
			if fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("run %d op %d: read error %v, Decode error %v", run, op, gerr, werr)
			}
		}
	}
}

// journal-corrupt in a world: the flipped record stays on disk and every
// later read reports it, the agents restart on the intact records, and a
// second upgrade goes through on top of the corrupt journals.
func TestJournalCorruptAgentsCarryOnWithTheIntactRecords(t *testing.T) {
	src := `name: corrupt
duration: 3h
fleet: {devices: 4, agent_version: v1.0.0}
steps:
  - {at: 30s, upgrade_agent: {version: v1.1.0}}
  - {at: 30m, upgrade_agent: {version: v1.2.0}}
faults:
  - {kind: journal-corrupt, names: [dev-0, dev-1], at: 20m}
  - {kind: agent-crash, names: [dev-0, dev-1], at: 21m}
expect:
  converged_within: 30m
  agent_version: {v1.2.0: "100%"}
  faults_fired: {journal-corrupt: "2"}
`
	w, err := New(mustScenario(t, src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := w.Run()
	if !r.Passed {
		t.Fatalf("violations %v, expectations %v", r.Violations, r.Expectations)
	}
	for i, d := range w.devs {
		recs, err := d.disk.readJournal()
		var ce *journal.CorruptError
		if corrupt := errors.As(err, &ce); corrupt != (i < 2) {
			t.Fatalf("%s: read error %v; want corruption only on dev-0 and dev-1", d.name, err)
		}
		if len(recs) == 0 || recs[len(recs)-1].Kind != agentcore.RecCommitted || recs[len(recs)-1].To.Compare(core.MustParseVersion("v1.2.0")) != 0 {
			t.Fatalf("%s: journal %+v; want it to end with attempt 2 committed", d.name, recs)
		}
	}
}
