package sim

import (
	"strconv"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
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

// heartbeatWrite is a heartbeat KV write in one allocation. Readers in the
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
	pkStart
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
			d.disk.tornTail = true // dropped by the reader at mount
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
	in := agentcore.CandidateStarted{Attempt: attempt}
	if !d.disk.Complete(sc.Version) {
		in.Err = "versions/" + sc.Version.String() + " is missing"
		old.input(in)
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
	old.input(in)
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

// Proc is one agent process: the production agent core, its NATS
// connection, its timers and its effect queue.
type Proc struct {
	dev         *Device
	agent       *agentcore.Agent
	conn        *natsim.Conn
	version     core.Version
	candidateOf uint32
	pid         uint32
	alive       bool
	hung        bool
	bad         uint8 // behaviour of this binary

	timerGen [4]uint32

	busy    bool
	diskOp  agentcore.Effect
	pending []agentcore.Effect
	inbox   []agentcore.Input

	downloading     bool
	downloadVer     core.Version
	pendingSelfTest agentcore.SelfTest
	pendingStart    agentcore.StartCandidate
	wlEvents        []agentcore.WorkloadStatus
	wlSeq           uint64

	handles map[uint64]*natsim.Msg
	nextHdl uint64
	chk     check.Proc
}

func timerIdx(t agentcore.TimerID) int {
	switch t {
	case agentcore.TimerHeartbeat:
		return 0
	case agentcore.TimerInfo:
		return 1
	case agentcore.TimerCutover:
		return 2
	}
	return 3
}

var timerIDs = [4]agentcore.TimerID{agentcore.TimerHeartbeat, agentcore.TimerInfo, agentcore.TimerCutover, agentcore.TimerCandidatePoll}

// timerInputs are boxed once: a timer firing is the most frequent input.
var timerInputs = [4]agentcore.Input{agentcore.TimerFired{Timer: timerIDs[0]}, agentcore.TimerFired{Timer: timerIDs[1]},
	agentcore.TimerFired{Timer: timerIDs[2]}, agentcore.TimerFired{Timer: timerIDs[3]}}

// begin connects, starts the core and delivers Start.
func (p *Proc) begin() {
	d := p.dev
	w := d.w
	p.agent = agentcore.New(agentcore.Config{
		Device: d.name, Labels: d.labels, Version: p.version,
		HeartbeatInterval: w.sc.Fleet.HeartbeatInterval.D,
	})
	p.conn = w.net.Connect(p)
	p.conn.Tag = p
	d.applyLinkTo(p.conn)
	p.step(agentcore.Start{
		BootID:           d.name + "-" + strconv.FormatUint(uint64(d.boots), 10) + "-" + strconv.FormatUint(uint64(p.pid), 10),
		CandidateAttempt: p.candidateOf,
		Journal:          d.disk.ReadJournal(),
		Current:          d.disk.current,
		Installed:        d.disk.Installed(),
	})
	if !p.alive {
		return
	}
	p.conn.Watch(wDesired, "desired-state", core.DesiredStateDeviceFilter(d.name), natsim.WatchLast, 0)
	p.conn.Watch(wMarker, "agent-upgrade", core.AgentUpgradeKey(d.name), natsim.WatchLast, 0)
	p.conn.Subscribe(1, core.CommandSubscription(d.name))
	p.maybeHang()
}

// past start-up: a candidate after its Start, an active agent once its
// start-up recovery is done. A bad binary misbehaves from there on (its
// recovery code, which ran before, is the previous version's).
func (p *Proc) pastStartup() bool {
	return p.candidateOf != 0 || p.agent.Ready()
}

func (p *Proc) maybeHang() {
	if p.bad == bHangs && p.alive && p.pastStartup() {
		p.hung = true
	}
}

const (
	wDesired = 1
	wMarker  = 2
)

// kill ends the process without any further effect.
func (p *Proc) kill() {
	if !p.alive {
		return
	}
	p.alive = false
	p.busy = false
	p.pending, p.inbox, p.diskOp = nil, nil, nil
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

// input delivers an input now (or queues it while effects are in flight).
func (p *Proc) input(in agentcore.Input) {
	if !p.alive {
		return
	}
	if p.busy {
		p.inbox = append(p.inbox, in)
		return
	}
	p.step(in)
}

func (p *Proc) inputAfter(d time.Duration, in agentcore.Input) {
	p.dev.w.k.After(d, kernel.Event{Target: p, Kind: pkInput, P: in})
}

func (p *Proc) step(in agentcore.Input) {
	if p.hung {
		return
	}
	d := p.dev
	w := d.w
	effs := p.agent.Step(d.now(), in)
	w.traceAgent(p, in, effs)
	w.chk.AgentStep(w.k.Now(), d.name, &p.chk, in, effs)
	if p == d.main {
		if ph := p.agent.UpgradePhase(); ph != d.lastPhase {
			d.lastPhase = ph
			w.phaseEntered(d, ph)
		}
	}
	p.run(effs)
	p.maybeHang()
	w.checkStop()
}

// Handle implements kernel.Handler for process events.
func (p *Proc) Handle(k *kernel.Kernel, ev *kernel.Event) {
	if !p.alive {
		return
	}
	switch ev.Kind {
	case pkTimer:
		if uint32(ev.B) != p.timerGen[ev.A] {
			return
		}
		p.input(timerInputs[ev.A])
	case pkInput:
		p.input(ev.P.(agentcore.Input))
	case pkDiskDone:
		p.finishDiskOp()
		p.resume()
	}
}

// run carries out effects in order; a disk write pauses the queue until it
// is durable (the next effect must not run before).
func (p *Proc) run(effs []agentcore.Effect) {
	d := p.dev
	w := d.w
	for i, e := range effs {
		if !p.alive {
			return
		}
		switch e := e.(type) {
		case agentcore.AppendJournal, agentcore.SwapCurrent, agentcore.PreserveRunning, agentcore.RemoveVersion:
			p.busy = true
			p.diskOp = e
			p.pending = append(p.pending[:0:0], effs[i+1:]...)
			w.k.After(w.diskLatency(), kernel.Event{Target: p, Kind: pkDiskDone})
			return
		case agentcore.PutHeartbeat:
			if p.bad == bCrashes && p.pastStartup() {
				p.die("exit status 2 (segmentation fault)", w.restartDelay())
				return
			}
			if p.bad == bHangs && p.pastStartup() {
				continue
			}
			// One allocation for the entry, its bytes and its object:
			// heartbeats are most of what a fleet writes.
			hw := &heartbeatWrite{hb: e.Heartbeat, dev: d}
			b, err := hw.hb.AppendEncode(hw.buf[:0])
			if err != nil {
				w.coreError(d, "heartbeat", err)
				continue
			}
			hw.e = natsim.Entry{Bucket: core.BucketDeviceHeartbeat, Key: core.HeartbeatKey(d.name), Value: b, Obj: hw}
			p.conn.PutEntry(&hw.e)
		case agentcore.PutDeviceInfo:
			b, err := e.Info.Encode()
			if err != nil {
				w.coreError(d, "device-info", err)
				continue
			}
			p.conn.Put("device-info", core.DeviceInfoKey(d.name), b, e.Info)
		case agentcore.PutDeviceState:
			b, err := e.State.Encode()
			if err != nil {
				w.coreError(d, "device-state", err)
				continue
			}
			p.conn.Put("device-state", core.DeviceStateKey(d.name, e.State.Deployment), b, e.State)
		case agentcore.DeleteDeviceState:
			p.conn.Delete("device-state", core.DeviceStateKey(d.name, e.Deployment))
		case agentcore.PutUpgradeStatus:
			b, err := e.Status.Encode()
			if err != nil {
				w.coreError(d, "upgrade-status", err)
				continue
			}
			p.conn.Put("agent-upgrade-status", core.AgentUpgradeStatusKey(d.name), b, e.Status)
		case agentcore.ArmTimer:
			i := timerIdx(e.Timer)
			p.timerGen[i]++
			w.k.After(d.scaled(e.After), kernel.Event{Target: p, Kind: pkTimer, A: uint64(i), B: uint64(p.timerGen[i])})
		case agentcore.CancelTimer:
			p.timerGen[timerIdx(e.Timer)]++
		case agentcore.StartWorkload:
			d.setWorkload(e.Spec.Deployment, e.Spec.Version, e.Spec.Generation)
			p.wlSeq++
			p.wlEvents = append(p.wlEvents, agentcore.WorkloadStatus{Deployment: e.Spec.Deployment,
				Generation: e.Spec.Generation, Phase: core.PhaseRunning})
			w.k.After(w.workloadDelay(), kernel.Event{Target: d, Kind: dkWorkloadUp, P: p, A: p.wlSeq})
		case agentcore.StopWorkload:
			d.removeWorkload(e.Deployment)
		case agentcore.Reply:
			if m := p.handles[e.Handle]; m != nil {
				delete(p.handles, e.Handle)
				p.conn.Respond(m, nil, e.Reply)
			}
		case agentcore.FetchLogs:
			if m := p.handles[e.Handle]; m != nil {
				delete(p.handles, e.Handle)
				p.conn.Respond(m, nil, core.CommandReply{Schema: core.SchemaVersion, Verb: core.VerbLogs, ID: e.ID,
					Logs: &core.LogsResult{Lines: []string{"simulated log line"}}})
			}
		case agentcore.RunExec:
			if m := p.handles[e.Handle]; m != nil {
				delete(p.handles, e.Handle)
				p.conn.Respond(m, nil, core.CommandReply{Schema: core.SchemaVersion, Verb: core.VerbExec, ID: e.ID,
					Exec: &core.ExecResult{ExitCode: 0}})
			}
		case agentcore.Download:
			p.downloading = true
			p.downloadVer = e.Version
			dir := d.disk.dir(e.Version)
			dir.complete, dir.verified = false, false
			w.k.After(w.downloadTime(), kernel.Event{Target: d, Kind: dkDownloadDone, P: p, A: uint64(e.Attempt)})
		case agentcore.SelfTest:
			p.pendingSelfTest = e
			w.k.After(w.selfTestTime(), kernel.Event{Target: d, Kind: dkSelfTestDone, P: p})
		case agentcore.StartCandidate:
			p.pendingStart = e
			w.k.After(w.startTime(), kernel.Event{Target: d, Kind: dkCandidateReady, P: p, A: uint64(e.Attempt)})
		case agentcore.StopCandidate:
			if c := d.cand; c != nil && c.candidateOf == e.Attempt {
				c.kill()
				d.cand = nil
				p.inputAfter(50*time.Millisecond, agentcore.CandidateExited{Attempt: e.Attempt, Detail: "stopped"})
			}
		case agentcore.ReadJournal:
			p.inputAfter(time.Millisecond, agentcore.JournalRead{Records: d.disk.ReadJournal()})
		case agentcore.Exit:
			p.exit()
			return
		case agentcore.Reexec:
			p.reexec(e.Version)
			return
		case agentcore.Log:
			if w.k.Tracing() {
				w.k.TraceText(d.name + " log " + e.Level + " " + e.Msg)
			}
		}
	}
	p.busy = false
	p.drain()
}

func (p *Proc) resume() {
	effs := p.pending
	p.pending = nil
	p.busy = false
	p.run(effs)
}

func (p *Proc) drain() {
	for !p.busy && p.alive && len(p.inbox) > 0 {
		in := p.inbox[0]
		p.inbox = p.inbox[1:]
		if len(p.inbox) == 0 {
			p.inbox = nil
		}
		p.step(in)
	}
}

// finishDiskOp makes the write in flight durable and queues its result.
func (p *Proc) finishDiskOp() {
	d := p.dev
	op := p.diskOp
	p.diskOp = nil
	switch e := op.(type) {
	case agentcore.AppendJournal:
		d.disk.append(e.Record)
	case agentcore.SwapCurrent:
		in := agentcore.SwapDone{Attempt: e.Attempt, To: e.To}
		if d.disk.Complete(e.To) {
			d.disk.current, d.disk.hasCurrent = e.To, true
		} else {
			in.Err = "versions/" + e.To.String() + " is missing or incomplete"
		}
		p.inbox = append(p.inbox, in)
	case agentcore.PreserveRunning:
		dir := d.disk.dir(e.Version)
		dir.complete, dir.verified = true, true
		if !d.disk.hasCurrent {
			d.disk.current, d.disk.hasCurrent = e.Version, true
		}
		p.inbox = append(p.inbox, agentcore.PreserveDone{Version: e.Version})
	case agentcore.RemoveVersion:
		d.disk.remove(e.Version)
	}
	p.busy = false
	d.w.chk.CheckDisk(d.w.k.Now(), d.name, &d.disk)
	d.w.checkStop()
}

func (p *Proc) exit() {
	d := p.dev
	p.kill()
	if d.main == p {
		d.main = nil
		if d.cand != nil && d.cand.alive {
			d.main, d.cand = d.cand, nil
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

func (d *Device) removeWorkload(dep string) {
	for i := range d.workloads {
		if d.workloads[i].dep == dep {
			d.workloads = append(d.workloads[:i], d.workloads[i+1:]...)
			return
		}
	}
}

// ---- natsim.Client ------------------------------------------------------------------

// WatchEntry implements natsim.Client.
func (p *Proc) WatchEntry(_ *natsim.Conn, id int, e *natsim.Entry) {
	if e == nil || !p.alive {
		return
	}
	switch id {
	case wDesired:
		_, dep, err := core.ParseDesiredStateKey(e.Key)
		if err != nil {
			return
		}
		if e.Op != natsim.OpPut {
			p.input(agentcore.DesiredDeleted{Deployment: dep, Revision: e.Rev})
			return
		}
		spec, err := decodeSpec(e)
		if err != nil {
			p.input(agentcore.DesiredInvalid{Deployment: dep, Revision: e.Rev, Err: err.Error()})
			return
		}
		p.input(agentcore.DesiredPut{Deployment: dep, Spec: spec, Revision: e.Rev})
	case wMarker:
		if e.Op != natsim.OpPut {
			p.input(agentcore.MarkerDeleted{})
			return
		}
		m, err := decodeMarker(e)
		if err != nil {
			p.input(agentcore.MarkerInvalid{Err: err.Error()})
			return
		}
		p.input(agentcore.MarkerPut{Marker: m})
	}
}

func decodeSpec(e *natsim.Entry) (core.WorkloadSpec, error) {
	if s, ok := e.Obj.(core.WorkloadSpec); ok {
		return s, nil
	}
	s, err := core.DecodeWorkloadSpec(e.Value)
	if err == nil {
		e.Obj = s // entries are immutable for readers; cache the decode
	}
	return s, err
}

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

// Message implements natsim.Client: a command request.
func (p *Proc) Message(_ *natsim.Conn, _ int, m *natsim.Msg) {
	if !p.alive {
		return
	}
	_, verb, err := core.ParseCommandSubject(m.Subject)
	if err != nil {
		return
	}
	p.nextHdl++
	if p.handles == nil {
		p.handles = map[uint64]*natsim.Msg{}
	}
	p.handles[p.nextHdl] = m
	in := agentcore.CommandReceived{Handle: p.nextHdl, Verb: verb}
	if r, ok := m.Obj.(core.CommandRequest); ok {
		in.Request = r
	} else if r, err := core.DecodeCommandRequest(verb, m.Data); err == nil {
		in.Request = r
	} else {
		in.DecodeErr = err.Error()
	}
	p.input(in)
}

// Reply implements natsim.Client (agents send no requests).
func (p *Proc) Reply(*natsim.Conn, uint64, *natsim.Msg, error) {}

// ConnState implements natsim.Client.
func (p *Proc) ConnState(*natsim.Conn, bool) {}
