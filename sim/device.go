package sim

import (
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/agent/link"
	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/sim/check"
	"github.com/flotilla-fleet/flotilla/sim/kernel"
	"github.com/flotilla-fleet/flotilla/sim/natsim"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Device is one virtual device: a disk, up to two agent processes (the
// active one and an upgrade candidate), a clock and its links. No goroutine
// and no map per device: everything is driven by the kernel's heap.
type Device struct {
	w      *World
	idx    int32
	name   string
	labels map[string]string // shared between devices with the same labels
	chk    check.DeviceRef

	disk    Disk
	main    *Proc
	cand    *Proc
	powered bool
	boots   uint32
	pids    uint32

	// clock: device time = virtual time + offset + drift since driftFrom
	offset    time.Duration
	driftPPM  int64
	driftFrom time.Duration

	// link state applied to every connection of this device
	linkUp, blockOut, blockIn bool

	artifact  uint8 // artifact behaviour override (0: the rollout's)
	workloads []workload
	lastPhase core.AgentUpgradePhase
	offlineN  int // nested offline / power-cut windows
}

type workload struct {
	dep     string
	version string
	gen     int64
}

// heartbeatWrite is a heartbeat KV write's entry and object in one
// allocation (agent/link encodes the bytes into buf, see heartbeatBuf). Readers in the
// simulator see Entry.Obj as the *heartbeatWrite (the device without a
// lookup by name).
type heartbeatWrite struct {
	e   natsim.Entry
	hb  core.Heartbeat
	dev *Device
	buf [core.MaxHeartbeatBytes]byte
}

// Event kinds for devices.
const (
	dkBoot uint16 = iota + 1
	dkPowerCut
	dkCrash
	dkDownloadDone
	dkSelfTestDone
	dkCandidateReady
	dkWorkloadUp
	dkRestart
)

// Event kinds for processes.
const (
	pkTimer uint16 = iota + 1
	pkInput
	pkDiskDone
	pkJournalRead
)

func (d *Device) now() time.Time {
	t := d.w.k.Now()
	dt := t + d.offset
	if d.driftPPM != 0 && t > d.driftFrom {
		dt += time.Duration(int64(t-d.driftFrom) / 1_000_000 * d.driftPPM)
	}
	return kernel.Epoch.Add(dt)
}

// scaled converts a duration on the device's clock into virtual time.
func (d *Device) scaled(x time.Duration) time.Duration {
	if d.driftPPM == 0 {
		return x
	}
	return time.Duration(float64(x) / (1 + float64(d.driftPPM)/1e6))
}

// Handle implements kernel.Handler for device-level events.
func (d *Device) Handle(k *kernel.Kernel, ev *kernel.Event) {
	switch ev.Kind {
	case dkBoot:
		if uint32(ev.A) != d.boots {
			return
		}
		d.boot()
	case dkPowerCut:
		d.powerCut(ev.A == 1, time.Duration(ev.B))
	case dkRestart:
		if d.powered && d.main == nil {
			d.startMain()
		}
	case dkCrash:
		d.crash(time.Duration(ev.B))
	case dkDownloadDone:
		d.downloadDone(ev.P.(*Proc), uint32(ev.A))
	case dkSelfTestDone:
		p := ev.P.(*Proc)
		if !p.alive {
			return
		}
		st := p.pendingSelfTest
		in := agentcore.SelfTestDone{Attempt: st.Attempt}
		if d.w.behaviour(d, st.Version) == bSelfTest {
			d.w.fired(scenario.FaultArtifact)
			in.Err = "self-test exited with status 1"
		} else if i := d.disk.find(st.Version); i >= 0 && d.disk.versions[i].complete {
			d.disk.versions[i].verified = true
		} else {
			in.Err = "versions/" + st.Version.String() + " is missing or incomplete"
		}
		p.input(in)
	case dkCandidateReady:
		p := ev.P.(*Proc)
		d.candidateReady(p, uint32(ev.A))
	case dkWorkloadUp:
		p := ev.P.(*Proc)
		if !p.alive {
			return
		}
		in := p.takeWorkloadEvent()
		p.input(in)
	}
}

// boot powers the device on and starts the agent unit on the current link.
func (d *Device) boot() {
	d.powered = true
	d.disk.mount()
	d.w.chk.CheckDisk(d.w.k.Now(), d.name, &d.disk)
	d.w.checkStop()
	d.startMain()
}

func (d *Device) startMain() {
	if !d.powered || d.main != nil {
		return
	}
	v, ok := d.disk.Current()
	if !ok || !d.disk.Complete(v) {
		// Nothing to run: the device is bricked (invariant 1 says why).
		return
	}
	d.main = d.newProc(v, 0)
	d.main.begin()
}

func (d *Device) newProc(v core.Version, candidate uint32) *Proc {
	d.pids++
	p := &Proc{dev: d, version: v, candidateOf: candidate, pid: d.pids, alive: true}
	p.chk.Candidate = candidate != 0
	p.bad = d.w.behaviour(d, v)
	return p
}

// powerCut kills every process at once and loses or tears the write in
// flight; the device boots again after down.
func (d *Device) powerCut(torn bool, down time.Duration) {
	if !d.powered {
		return
	}
	d.w.fired(faultPowerCutKey)
	d.powered = false
	for _, p := range []*Proc{d.main, d.cand} {
		if p == nil {
			continue
		}
		if p.busy && p.diskOp != nil {
			d.tearDiskOp(p, torn)
		}
		if p.downloading {
			// A partial download stays behind, incomplete.
			d.disk.dir(p.downloadVer)
		}
		p.kill()
	}
	d.main, d.cand = nil, nil
	d.workloads = d.workloads[:0]
	d.w.chk.CheckDisk(d.w.k.Now(), d.name, &d.disk)
	d.w.checkStop()
	d.boots++
	d.w.k.After(down, kernel.Event{Target: d, Kind: dkBoot, A: uint64(d.boots)})
}

// powerOff is a clean shutdown (device offline for a while).
func (d *Device) powerOff(down time.Duration) {
	if !d.powered {
		return
	}
	d.powered = false
	for _, p := range []*Proc{d.cand, d.main} {
		if p == nil {
			continue
		}
		for p.busy && p.alive {
			p.finishDiskOp() // clean shutdown: writes in flight complete
			p.busy = false
		}
		p.kill()
	}
	d.main, d.cand = nil, nil
	d.workloads = d.workloads[:0]
	d.boots++
	d.w.k.After(down, kernel.Event{Target: d, Kind: dkBoot, A: uint64(d.boots)})
}

func (d *Device) tearDiskOp(p *Proc, torn bool) {
	switch e := p.diskOp.(type) {
	case agentcore.AppendJournal:
		if torn {
			d.disk.tear(e.Record) // the line is torn; the reader drops it
		}
	case agentcore.SwapCurrent:
		if torn { // the rename reached the disk, its fsync did not: either link
			if d.disk.Complete(e.To) {
				d.disk.current, d.disk.hasCurrent = e.To, true
			}
		}
	case agentcore.PreserveRunning:
		dir := d.disk.dir(e.Version)
		if !dir.complete {
			dir.verified = false
		}
	case agentcore.RemoveVersion:
		if torn {
			if dir := d.disk.dir(e.Version); dir != nil {
				dir.complete = false
			}
		}
	}
	p.diskOp = nil
}

// crash kills the active agent process (not the candidate, a separate unit);
// systemd restarts the unit after restart.
func (d *Device) crash(restart time.Duration) {
	if d.main == nil || !d.main.alive {
		return
	}
	d.w.fired(faultAgentCrashKey)
	d.main.die("crashed", restart)
}

func (d *Device) candidateReady(p *Proc, attempt uint32) {
	old := p // the process that asked
	if !old.alive {
		return
	}
	sc := old.pendingStart
	if !d.disk.Complete(sc.Version) {
		old.feed(link.Done(errors.New("versions/" + sc.Version.String() + " is missing")))
		return
	}
	if d.cand != nil && d.cand.alive {
		d.cand.kill()
	}
	c := d.newProc(sc.Version, attempt)
	d.cand = c
	if c.bad == bCrashes || c.bad == bHangs {
		d.w.fired(scenario.FaultArtifact)
	}
	old.feed(link.Done(nil))
	c.begin()
}

func (d *Device) downloadDone(p *Proc, attempt uint32) {
	if !p.alive || !p.downloading {
		return
	}
	p.downloading = false
	v := p.downloadVer
	in := agentcore.DownloadDone{Attempt: attempt}
	b := d.w.behaviour(d, v)
	if b == bCorrupt || b == bWrongHash || b == bDiskFull || b == bDownloadFails {
		d.w.fired(scenario.FaultArtifact)
	}
	switch {
	case b == bCorrupt || b == bWrongHash:
		in.Err, in.Reason = "SHA-256 mismatch", core.ReasonChecksumMismatch
		d.disk.remove(v)
	case b == bDiskFull || d.disk.full:
		in.Err, in.Reason = "no space left on device", core.ReasonDiskFull
		d.disk.remove(v)
	case b == bDownloadFails:
		in.Err, in.Reason = "connection reset by peer", core.ReasonDownloadFailed
		d.disk.remove(v)
	default:
		dir := d.disk.dir(v)
		dir.complete = true
	}
	p.input(in)
}

// ---- processes -----------------------------------------------------------------

// Proc is one agent process: agent/link's state machine (owning the
// production agent core) over a simulated NATS connection, the simulated
// disk and a simulated executor and runtime. Nothing here decides: the
// link's actions are carried out and their outcomes fed back as events.
type Proc struct {
	dev         *Device
	agent       *agentcore.Agent
	lk          *link.Link
	conn        *natsim.Conn
	version     core.Version
	candidateOf uint32
	pid         uint32
	alive       bool
	hung        bool
	crashing    bool  // a crashing binary reached its first heartbeat
	bad         uint8 // behaviour of this binary

	busy    bool             // an inline disk effect is under way
	diskOp  agentcore.Effect // that effect
	feeding bool             // inside feed: events raised meanwhile queue
	queue   []link.Event

	downloading     bool
	downloadVer     core.Version
	pendingSelfTest agentcore.SelfTest
	pendingStart    agentcore.StartCandidate
	wlEvents        []agentcore.WorkloadStatus
	wlSeq           uint64
	chk             check.Proc
}

// agentConn is how the agent dials (agent/shell/nats.go's options).
var agentConn = natsim.ConnOptions{Name: "flotilla-agent", PingInterval: 10 * time.Second, MaxPingsOut: 3,
	ReconnectWait: time.Second, ReconnectBuf: 1 << 20}

// begin starts the link and delivers Start.
func (p *Proc) begin() {
	d := p.dev
	w := d.w
	p.agent = agentcore.New(agentcore.Config{
		Device: d.name, Labels: d.labels, Version: p.version,
		HeartbeatInterval: w.sc.Fleet.HeartbeatInterval.D,
	})
	p.lk = link.New(link.Config{Device: d.name, Version: p.version, CandidateAttempt: p.candidateOf, Core: p.agent,
		Seed: uint64(d.idx)<<32 | uint64(p.pid), Observe: p.observe, Actions: &w.agentActs,
		HeartbeatBuf: p.heartbeatBuf})
	p.feed(link.Started(agentcore.Start{
		BootID:           d.name + "-" + strconv.FormatUint(uint64(d.boots), 10) + "-" + strconv.FormatUint(uint64(p.pid), 10),
		CandidateAttempt: p.candidateOf,
		Journal:          d.disk.ReadJournal(),
		Current:          d.disk.current,
		Installed:        d.disk.Installed(),
	}))
}

// observe sees every core step: the checker, the trace, the upgrade phase
// and the misbehaviour of a bad binary.
func (p *Proc) observe(in agentcore.Input, effs []agentcore.Effect) {
	d := p.dev
	w := d.w
	w.traceAgent(p, in, effs)
	w.chk.AgentStep(w.k.Now(), d.name, &p.chk, in, effs)
	if p == d.main {
		if ph := p.agent.UpgradePhase(); ph != d.lastPhase {
			d.lastPhase = ph
			w.phaseEntered(d, ph)
		}
	}
	if (p.bad == bCrashes || p.bad == bHangs) && p.pastStartup() {
		if p.bad == bHangs {
			p.hung = true
			return
		}
		for _, e := range effs {
			if _, ok := e.(agentcore.PutHeartbeat); ok {
				p.crashing = true
			}
		}
	}
}

// past start-up: a candidate after its Start, an active agent once its
// start-up recovery is done. A bad binary misbehaves from there on (its
// recovery code, which ran before, is the previous version's).
func (p *Proc) pastStartup() bool {
	return p.candidateOf != 0 || p.agent.Ready()
}

// kill ends the process without any further effect.
func (p *Proc) kill() {
	if !p.alive {
		return
	}
	p.alive = false
	p.busy = false
	p.diskOp = nil
	p.queue = nil
	if p.conn != nil {
		p.conn.Close()
	}
}

// die ends the process abnormally; a main unit is restarted by systemd, a
// candidate's end is reported to the old agent.
func (p *Proc) die(detail string, restart time.Duration) {
	d := p.dev
	p.kill()
	if d.cand == p {
		d.cand = nil
		if d.main != nil && d.main.alive {
			d.main.inputAfter(time.Millisecond, agentcore.CandidateExited{Attempt: p.candidateOf, Detail: detail})
		}
		return
	}
	if d.main == p {
		// systemd restarts the unit on the current link; a candidate, a
		// separate unit, keeps running.
		d.main = nil
		d.w.k.After(restart, kernel.Event{Target: d, Kind: dkRestart})
	}
}

// input delivers a core input through the link.
func (p *Proc) input(in agentcore.Input) { p.feed(link.Input(in)) }

func (p *Proc) inputAfter(d time.Duration, in agentcore.Input) {
	p.dev.w.k.After(d, kernel.Event{Target: p, Kind: pkInput, P: in})
}

// feed steps the link with ev and carries out its actions; events raised
// while doing so are stepped in after them, in order.
func (p *Proc) feed(ev link.Event) {
	if !p.alive || p.hung {
		return
	}
	if p.feeding {
		p.queue = append(p.queue, ev)
		return
	}
	d := p.dev
	p.feeding = true
	for {
		acts := p.lk.Step(d.now(), ev)
		d.w.linkSteps++
		step := d.w.linkSteps
		if p.crashing {
			p.feeding = false
			p.die("exit status 2 (segmentation fault)", d.w.restartDelay())
			break
		}
		if p.hung {
			break
		}
		for i := range acts {
			if !p.alive {
				break
			}
			if d.w.linkSteps != step {
				// The links share one action buffer: another link was
				// stepped while this one's actions were carried out.
				panic("sim: a link was stepped inside another link's actions")
			}
			p.do(&acts[i])
		}
		if !p.alive || p.hung || len(p.queue) == 0 {
			break
		}
		ev = p.queue[0]
		p.queue = p.queue[1:]
	}
	p.feeding = false
	p.queue = p.queue[:0]
	d.w.checkStop()
}

// Handle implements kernel.Handler for process events.
func (p *Proc) Handle(k *kernel.Kernel, ev *kernel.Event) {
	if !p.alive {
		return
	}
	switch ev.Kind {
	case pkTimer:
		p.feed(link.Fired(link.Timer(ev.A), uint32(ev.B)))
	case pkInput:
		p.input(ev.P.(agentcore.Input))
	case pkDiskDone:
		err := p.finishDiskOp()
		p.feed(link.Done(err))
	case pkJournalRead:
		p.feed(link.JournalDone(p.dev.disk.ReadJournal(), nil))
	}
}

// heartbeatBuf gives agent/link a heartbeat write's buffer and object in one
// allocation.
func (p *Proc) heartbeatBuf(hb core.Heartbeat) ([]byte, any) {
	hw := &heartbeatWrite{hb: hb, dev: p.dev}
	return hw.buf[:0], hw
}

// watchKey is the natsim watch id of one creation of a link watch.
func watchKey(w link.WatchID, gen uint32) int { return int(gen)<<1 | int(w) }

// do carries out one action of the link.
func (p *Proc) do(a *link.Action) {
	d := p.dev
	w := d.w
	switch a.Kind {
	case link.ActConnect:
		p.conn = w.net.Dial(p, agentConn)
		p.conn.Tag = p
		d.applyLinkTo(p.conn)
		p.conn.Subscribe(1, core.CommandSubscription(d.name))
		if p.conn.Up() {
			p.feed(link.Conn(true))
		}
	case link.ActWrite:
		if !p.conn.Up() {
			// As agent/shell does: a write is not handed to a reconnecting
			// client (it would land late, after newer values).
			p.feed(link.WriteDone(a.Token, errNotConnected))
			return
		}
		if hw, ok := a.Obj.(*heartbeatWrite); ok {
			// One allocation for the bytes, the entry and its object:
			// heartbeats are most of what a fleet writes.
			hw.e = natsim.Entry{Bucket: a.Bucket, Key: a.Key, Op: natsim.OpPut, Value: a.Value, Obj: hw}
			p.conn.Write(a.Token, &hw.e, a.Timeout)
			return
		}
		e := &natsim.Entry{Bucket: a.Bucket, Key: a.Key, Op: natsim.OpPut, Value: a.Value, Obj: a.Obj}
		if a.Delete {
			e.Op, e.Obj = natsim.OpDelete, nil
		}
		p.conn.Write(a.Token, e, a.Timeout)
	case link.ActCreateBucket:
		_, err := w.net.S.CreateBucket(a.Bucket, 1)
		p.feed(link.BucketCreated(a.Bucket, err))
	case link.ActCreateWatch:
		p.conn.WatchFrom(watchKey(a.Watch, a.Gen), a.Bucket, a.Filter, a.From, a.Timeout)
	case link.ActStopWatch:
		p.conn.StopWatch(watchKey(a.Watch, a.Gen))
	case link.ActRespond:
		if m, ok := a.Reply.(*natsim.Msg); ok {
			p.conn.Respond(m, a.Data)
		}
	case link.ActArmTimer:
		w.k.After(d.scaled(a.After), kernel.Event{Target: p, Kind: pkTimer, A: uint64(a.Timer), B: uint64(a.Gen)})
	case link.ActRun:
		p.run(a.Effect)
	case link.ActInline:
		p.inline(a.Effect)
	case link.ActStopWorkloadsExcept:
		keep := d.workloads[:0]
		for _, wl := range d.workloads {
			if _, ok := slices.BinarySearch(a.Deployments, wl.dep); ok {
				keep = append(keep, wl)
			}
		}
		d.workloads = keep
	case link.ActExit:
		if r, ok := a.Effect.(agentcore.Reexec); ok {
			p.reexec(r.Version)
			return
		}
		if a.Code != 0 {
			// An abnormal exit (e.g. status 3 after a failed journal
			// append): systemd restarts the unit (Restart=on-failure,
			// RestartSec=2s); a candidate's end is reported to the old agent.
			p.die("exit status "+strconv.Itoa(a.Code), d.w.restartDelay())
			return
		}
		p.exit()
	}
}

// run starts an asynchronous effect of the simulated executor or runtime.
func (p *Proc) run(e agentcore.Effect) {
	d := p.dev
	w := d.w
	switch e := e.(type) {
	case agentcore.StartWorkload:
		d.setWorkload(e.Spec.Deployment, e.Spec.Version, e.Spec.Generation)
		p.wlSeq++
		p.wlEvents = append(p.wlEvents, agentcore.WorkloadStatus{Deployment: e.Spec.Deployment,
			Generation: e.Spec.Generation, Phase: core.PhaseRunning})
		w.k.After(w.workloadDelay(), kernel.Event{Target: d, Kind: dkWorkloadUp, P: p, A: p.wlSeq})
	case agentcore.StopWorkload:
		d.removeWorkload(e.Deployment)
	case agentcore.FetchLogs:
		// The simulated runtime's output, answered through the real reply
		// path (link → core-encoded bytes → the requester).
		lines := []string{"simulated log line"}
		if e.Args.Deployment != "" && !d.hasWorkload(e.Args.Deployment) {
			p.feed(link.CommandResult(e.Handle, core.ErrorReply(core.VerbLogs, e.ID, core.ErrCodeRejected,
				"deployment %q has no workload on this device", e.Args.Deployment)))
			return
		}
		p.feed(link.CommandResult(e.Handle, core.CommandReply{Schema: core.SchemaVersion, Verb: core.VerbLogs, ID: e.ID,
			Logs: &core.LogsResult{Lines: lines}}))
	case agentcore.RunExec:
		p.feed(link.CommandResult(e.Handle, core.CommandReply{Schema: core.SchemaVersion, Verb: core.VerbExec, ID: e.ID,
			Exec: &core.ExecResult{ExitCode: 0, Stdout: "simulated\n"}}))
	case agentcore.Download:
		p.downloading = true
		p.downloadVer = e.Version
		dir := d.disk.dir(e.Version)
		dir.complete, dir.verified = false, false
		w.k.After(w.downloadTime(), kernel.Event{Target: d, Kind: dkDownloadDone, P: p, A: uint64(e.Attempt)})
	case agentcore.SelfTest:
		p.pendingSelfTest = e
		w.k.After(w.selfTestTime(), kernel.Event{Target: d, Kind: dkSelfTestDone, P: p})
	case agentcore.Log:
		if w.k.Tracing() {
			w.k.TraceText(d.name + " log " + e.Level + " " + e.Msg)
		}
	}
}

// inline starts an effect the link waits for (link.Done reports it).
func (p *Proc) inline(e agentcore.Effect) {
	d := p.dev
	w := d.w
	switch e := e.(type) {
	case agentcore.AppendJournal, agentcore.SwapCurrent, agentcore.PreserveRunning, agentcore.RemoveVersion:
		p.busy = true
		p.diskOp = e
		w.k.After(w.diskLatency(), kernel.Event{Target: p, Kind: pkDiskDone})
	case agentcore.StartCandidate:
		p.pendingStart = e
		w.k.After(w.startTime(), kernel.Event{Target: d, Kind: dkCandidateReady, P: p, A: uint64(e.Attempt)})
	case agentcore.StopCandidate:
		if c := d.cand; c != nil && c.candidateOf == e.Attempt {
			c.kill()
			d.cand = nil
			p.inputAfter(50*time.Millisecond, agentcore.CandidateExited{Attempt: e.Attempt, Detail: "stopped"})
		}
		p.feed(link.Done(nil))
	case agentcore.ReadJournal:
		w.k.After(time.Millisecond, kernel.Event{Target: p, Kind: pkJournalRead})
	}
}

// finishDiskOp makes the disk effect in flight durable and returns its error.
func (p *Proc) finishDiskOp() error {
	d := p.dev
	op := p.diskOp
	p.diskOp = nil
	p.busy = false
	var err error
	switch e := op.(type) {
	case agentcore.AppendJournal:
		// A failed append (disk full) goes back to agent/link, which ends
		// the process with status 3, as in production (ActExit below).
		err = d.disk.append(e.Record)
	case agentcore.SwapCurrent:
		if d.disk.Complete(e.To) {
			d.disk.current, d.disk.hasCurrent = e.To, true
		} else {
			err = errors.New("versions/" + e.To.String() + " is missing or incomplete")
		}
	case agentcore.PreserveRunning:
		dir := d.disk.dir(e.Version)
		dir.complete, dir.verified = true, true
		if !d.disk.hasCurrent {
			d.disk.current, d.disk.hasCurrent = e.Version, true
		}
	case agentcore.RemoveVersion:
		d.disk.remove(e.Version)
	}
	d.w.chk.CheckDisk(d.w.k.Now(), d.name, &d.disk)
	d.w.checkStop()
	return err
}

func (p *Proc) exit() {
	d := p.dev
	p.kill()
	if d.main == p {
		d.main = nil
		if d.cand != nil && d.cand.alive {
			d.main, d.cand = d.cand, nil
			// The device's agent from now on: its next exit is judged as the
			// active agent's (a second upgrade tripped invariant 3 without this).
			d.main.chk.Candidate = false
		}
	} else if d.cand == p {
		d.cand = nil
	}
}

func (p *Proc) reexec(v core.Version) {
	d := p.dev
	p.kill()
	np := d.newProc(v, 0)
	if d.main == p {
		d.main = np
	} else {
		d.cand = np
	}
	if !d.disk.Complete(v) {
		// exec of a missing binary fails; systemd restarts the unit on the
		// current link.
		if d.main == np {
			d.main = nil
			d.w.k.After(d.w.restartDelay(), kernel.Event{Target: d, Kind: dkRestart})
		}
		return
	}
	np.begin()
}

func (p *Proc) takeWorkloadEvent() agentcore.WorkloadStatus {
	// Workloads start in a fixed time, so their events complete in order.
	in := p.wlEvents[0]
	p.wlEvents = p.wlEvents[1:]
	if len(p.wlEvents) == 0 {
		p.wlEvents = nil
	}
	return in
}

func (d *Device) setWorkload(dep, version string, gen int64) {
	for i := range d.workloads {
		if d.workloads[i].dep == dep {
			d.workloads[i].version, d.workloads[i].gen = version, gen
			return
		}
	}
	d.workloads = append(d.workloads, workload{dep: dep, version: version, gen: gen})
}

func (d *Device) hasWorkload(dep string) bool {
	for i := range d.workloads {
		if d.workloads[i].dep == dep {
			return true
		}
	}
	return false
}

func (d *Device) removeWorkload(dep string) {
	for i := range d.workloads {
		if d.workloads[i].dep == dep {
			d.workloads = append(d.workloads[:i], d.workloads[i+1:]...)
			return
		}
	}
}

// ---- natsim clients ------------------------------------------------------------------

var errNotConnected = errors.New("nats: not connected")

func linkErr(err error) error {
	if errors.Is(err, natsim.ErrBucketNotFound) {
		return link.ErrBucketNotFound
	}
	return err
}

// WatchEntry implements natsim.Client.
func (p *Proc) WatchEntry(_ *natsim.Conn, id int, e *natsim.Entry) {
	w, gen := link.WatchID(id&1), uint32(id>>1)
	if e == nil {
		p.feed(link.WatchReplayed(w, gen, 0))
		return
	}
	le := link.Entry{Key: e.Key, Value: e.Value, Rev: e.Rev}
	switch e.Op {
	case natsim.OpDelete:
		le.Op = link.OpDelete
	case natsim.OpPurge:
		le.Op = link.OpPurge
	}
	p.feed(link.WatchEntry(w, gen, le))
}

// WatchFailed implements natsim.WatchClient.
func (p *Proc) WatchFailed(_ *natsim.Conn, id int, err error) {
	p.feed(link.WatchFailed(link.WatchID(id&1), uint32(id>>1), linkErr(err)))
}

// WriteDone implements natsim.WriteClient.
func (p *Proc) WriteDone(_ *natsim.Conn, token uint64, _ uint64, err error) {
	p.feed(link.WriteDone(token, linkErr(err)))
}

// Message implements natsim.Client: a command request, as the bytes the
// operator encoded; agent/link decodes it with core's decoder.
func (p *Proc) Message(_ *natsim.Conn, _ int, m *natsim.Msg) {
	p.feed(link.Command(m.Subject, m.Data, m))
}

// Reply implements natsim.Client (agents send no requests).
func (p *Proc) Reply(*natsim.Conn, uint64, *natsim.Msg, error) {}

// ConnState implements natsim.Client.
func (p *Proc) ConnState(_ *natsim.Conn, up bool) { p.feed(link.Conn(up)) }

// decodeMarker decodes a marker entry for the simulator's observers (the
// checker's marker sink, the stop condition), caching the value in the
// entry. Agents do not use it: their path is link.MarkerInput.
func decodeMarker(e *natsim.Entry) (core.UpgradeMarker, error) {
	if m, ok := e.Obj.(core.UpgradeMarker); ok {
		return m, nil
	}
	m, err := core.DecodeUpgradeMarker(e.Value)
	if err == nil {
		e.Obj = m
	}
	return m, err
}
