//go:build simreal

package simreal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/internal/agenttest"
	"github.com/flotilla-fleet/flotilla/internal/natstest"
	"github.com/flotilla-fleet/flotilla/operator/natsadapter"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/operator/runner"
	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/check"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Env is what a real run needs from the suite.
type Env struct {
	// TB starts the nats-server and registers its shutdown (GinkgoT()).
	TB natstest.TB
	// Cleanup registers a function run when the spec ends, also on failure
	// (Ginkgo's DeferCleanup); last registered, first run.
	Cleanup func(func())
	// Root is a directory for device directories and logs.
	Root string
	// Builds are the agent binaries by version ("v1.0.0").
	Builds map[string]agenttest.Build
	// Settle bounds how long after the fault window the run may take to
	// converge (the scenario's converged_within, if shorter).
	Settle time.Duration
	// Log receives progress lines.
	Log io.Writer
}

// ---- construction: the two functions a merge adapts ----------------------------

// runOperator connects to NATS and runs one operator runner (opcore, the
// runcore machine over nats.go, store) until ctx ends or the runner fails. started is told
// the runner before it runs.
func runOperator(ctx context.Context, url string, store runner.Store, cfg opcore.Config, tick time.Duration,
	log *slog.Logger, observe func(time.Time, opcore.Input, []opcore.Effect), started func(*runner.Runner)) error {
	nc, err := natsadapter.Connect(url, nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return err
	}
	defer nc.Close()
	r := runner.New(runner.Options{NATS: nc, Store: store, Core: cfg, TickInterval: tick, Logger: log, Observe: observe})
	started(r)
	return r.Run(ctx)
}

// startAgent starts bin as d's agent process and calls exited (on its own
// goroutine) when the process ends.
func startAgent(d *agenttest.Device, bin string, exited func(p *agenttest.Proc)) (*agenttest.Proc, error) {
	p, err := d.Start(bin)
	if err != nil {
		return nil, err
	}
	go func() {
		<-p.Done()
		exited(p)
	}()
	return p, nil
}

// ---- one real run ---------------------------------------------------------------

type realRun struct {
	env   Env
	sc    *scenario.Scenario
	srv   *natstest.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	store *runner.MemStore
	obs   *observer
	log   *slog.Logger
	cfg   opcore.Config
	start time.Time

	devs   []*agenttest.Device
	labels map[string]map[string]string
	sums   agenttest.SumCache

	mu       sync.Mutex
	killed   map[int]bool // PIDs the harness killed
	pending  int          // faults begun and not yet over (restarts owed)
	fired    map[string]uint64
	triggers []*realTrigger
	rollouts []opcore.AgentRolloutSpec
	opRunner *runner.Runner
	opCancel context.CancelFunc
	opDone   chan struct{}
	stopped  bool
}

type realTrigger struct {
	f     *scenario.Fault
	devs  map[string]bool // nil: any device
	left  map[string]int
	total int // operator-crash without devices: crashes left
}

func (rr *realRun) logf(format string, args ...any) {
	if rr.env.Log != nil {
		fmt.Fprintf(rr.env.Log, "[%6.2fs] %s\n", time.Since(rr.start).Seconds(), fmt.Sprintf(format, args...))
	}
}

// RunReal runs sc for real and returns what it ended with.
func RunReal(ctx context.Context, env Env, sc *scenario.Scenario) (*Outcome, error) {
	if err := supported(sc, env); err != nil {
		return nil, err
	}
	w, err := sim.New(sc, sim.Options{}) // the fleet: names and labels as the simulator makes them
	if err != nil {
		return nil, err
	}
	rr := &realRun{env: env, sc: sc, start: time.Now(), labels: w.DeviceLabels(), killed: map[int]bool{},
		fired: map[string]uint64{}}
	rr.cfg = opcore.Config{OfflineAfter: sc.Operator.OfflineAfter.D, AttemptTimeout: sc.Operator.AttemptTimeout.D,
		CutoverTimeoutSec: int(sc.Operator.CutoverTimeout.D / time.Second), TickInterval: sc.Operator.Tick.D}.WithDefaults()
	dir := filepath.Join(env.Root, sc.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "operator.log"))
	if err != nil {
		return nil, err
	}
	env.Cleanup(func() { logf.Close() })
	rr.log = slog.New(slog.NewJSONHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug}))

	rr.srv = natstest.StartRestartable(env.TB)
	rr.nc, err = nats.Connect(rr.srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	env.Cleanup(rr.nc.Close)
	rr.js, err = jetstream.New(rr.nc)
	if err != nil {
		return nil, err
	}
	for v, b := range env.Builds {
		if v != sc.Fleet.AgentVersion {
			if err := agenttest.UploadArtifact(ctx, rr.js, b.Ref.Object, b.Path); err != nil {
				return nil, err
			}
		}
	}
	rr.obs, err = newObserver(rr.srv.URL(), check.New())
	if err != nil {
		return nil, err
	}
	env.Cleanup(rr.obs.close)
	rr.obs.onPhase = rr.phaseEntered

	rr.store = runner.NewMemStore()
	for _, name := range core.SortedKeys(rr.labels) {
		rr.store.PutDevice(name, rr.labels[name], false)
		rr.obs.deviceSeen(name, rr.labels[name])
	}
	rr.startOperator()
	env.Cleanup(rr.stopOperator)

	v0 := env.Builds[sc.Fleet.AgentVersion]
	for _, name := range core.SortedKeys(rr.labels) {
		d, err := agenttest.NewDevice(dir, agenttest.DeviceConfig{Name: name, Labels: rr.labels[name],
			NATSURL: rr.srv.URL(), HeartbeatInterval: sc.Fleet.HeartbeatInterval.D})
		if err != nil {
			return nil, err
		}
		rr.devs = append(rr.devs, d)
		env.Cleanup(func() { rr.powerCut(d) })
		inst := filepath.Join(d.Dir, "install", "flotilla-agent")
		if err := os.MkdirAll(filepath.Dir(inst), 0o755); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(v0.Path)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(inst, data, 0o755); err != nil {
			return nil, err
		}
		if _, err := rr.startAgent(d, inst); err != nil {
			return nil, err
		}
	}
	env.Cleanup(func() { // first of the cleanups: nothing restarts while the rest is torn down
		rr.mu.Lock()
		rr.stopped = true
		rr.mu.Unlock()
	})

	if err := rr.schedule(); err != nil {
		return nil, err
	}
	diskCtx, stopDisk := context.WithCancel(ctx)
	env.Cleanup(stopDisk)
	go rr.checkDisks(diskCtx)

	converged := rr.waitConverged(ctx)
	return rr.outcome(ctx, converged), nil
}

// supported rejects what the real harness cannot do (the simulator can).
func supported(sc *scenario.Scenario, env Env) error {
	var errs []error
	if _, ok := env.Builds[sc.Fleet.AgentVersion]; !ok {
		errs = append(errs, fmt.Errorf("no agent build for fleet version %s", sc.Fleet.AgentVersion))
	}
	if len(sc.Deployments) > 0 {
		errs = append(errs, errors.New("deployments are not supported by the real harness"))
	}
	for _, st := range sc.Steps {
		u := st.UpgradeAgent
		if u == nil {
			errs = append(errs, errors.New("only upgrade_agent steps are supported by the real harness"))
			continue
		}
		if _, ok := env.Builds[u.Version]; !ok {
			errs = append(errs, fmt.Errorf("no agent build for %s", u.Version))
		}
		if u.Artifact != scenario.ArtifactHealthy {
			errs = append(errs, fmt.Errorf("artifact %s is not supported by the real harness", u.Artifact))
		}
	}
	for _, f := range sc.Faults {
		switch f.Kind {
		case scenario.FaultOutage:
			if f.When != "" {
				errs = append(errs, errors.New("nats-outage on a phase trigger: the simulator ignores when for outages"))
			}
		case scenario.FaultOperatorCrash, scenario.FaultAgentCrash, scenario.FaultPowerCut:
			if f.Rate.Set {
				errs = append(errs, fmt.Errorf("%s with a rate is not supported by the real harness", f.Kind))
			}
		default:
			errs = append(errs, fmt.Errorf("fault %s is not supported by the real harness", f.Kind))
		}
		if f.Devices.Set {
			errs = append(errs, fmt.Errorf("%s: pick devices by names or selector (a drawn amount differs between the runs)", f.Kind))
		}
	}
	return errors.Join(errs...)
}

// ---- operator -------------------------------------------------------------------

// startOperator runs the operator, restarting it when it stops with an
// error (NATS went away), as its Deployment would.
func (rr *realRun) startOperator() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	rr.mu.Lock()
	rr.opCancel, rr.opDone = cancel, done
	rr.mu.Unlock()
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			err := runOperator(ctx, rr.srv.URL(), rr.store, rr.cfg, rr.sc.Operator.Tick.D, rr.log, rr.obs.operatorStep,
				func(r *runner.Runner) {
					rr.mu.Lock()
					rr.opRunner = r
					rr.mu.Unlock()
				})
			rr.mu.Lock()
			rr.opRunner = nil
			rr.mu.Unlock()
			if ctx.Err() == nil {
				rr.logf("operator stopped (%v); restarting", err)
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}()
}

// stopOperator ends the operator and waits for it: a crash (its memory is
// lost; KV and the store are kept).
func (rr *realRun) stopOperator() {
	rr.mu.Lock()
	cancel, done := rr.opCancel, rr.opDone
	rr.opCancel, rr.opDone = nil, nil
	rr.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (rr *realRun) operatorConverged() bool {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.opRunner != nil && rr.opRunner.Converged()
}

// ---- agents ---------------------------------------------------------------------

func (rr *realRun) startAgent(d *agenttest.Device, bin string) (*agenttest.Proc, error) {
	return startAgent(d, bin, func(p *agenttest.Proc) {
		rr.mu.Lock()
		killed := rr.killed[p.PID]
		rr.mu.Unlock()
		if killed {
			return
		}
		rr.logf("%s: agent pid %d exited: %v", d.Name, p.PID, p.State)
		rr.obs.agentExited(d.Name, fmt.Sprintf("pid %d %v", p.PID, p.State))
	})
}

func (rr *realRun) markKilled(pids []int) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	for _, p := range pids {
		rr.killed[p] = true
	}
}

func (rr *realRun) device(name string) *agenttest.Device {
	for _, d := range rr.devs {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// crashAgent is kill -9 of the device's active agent.
func (rr *realRun) crashAgent(d *agenttest.Device) bool {
	pid := d.ActivePID()
	if pid == 0 {
		return false
	}
	rr.markKilled([]int{pid})
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && d.Ours(pid); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	rr.logf("%s: killed the active agent (pid %d)", d.Name, pid)
	return true
}

// dumpGoroutines sends SIGQUIT to the device's active agent: the Go
// runtime writes every goroutine's stack to agent.log and exits (kept with
// SIMREAL_KEEP=1).
func (rr *realRun) dumpGoroutines(d *agenttest.Device) {
	pid := d.ActivePID()
	if pid == 0 {
		return
	}
	rr.markKilled([]int{pid})
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	for i := 0; i < 100 && d.Ours(pid); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	rr.logf("%s: goroutines of pid %d dumped to %s", d.Name, pid, d.LogPath)
}

// powerCut is kill -9 of every agent process of the device.
func (rr *realRun) powerCut(d *agenttest.Device) {
	pids := d.KillAll(func(pid int) { rr.markKilled([]int{pid}) })
	rr.logf("%s: power cut (killed %v)", d.Name, pids)
}

// reboot starts the device's agent from current after down.
func (rr *realRun) reboot(d *agenttest.Device, down time.Duration) {
	time.AfterFunc(down, func() {
		defer rr.endFault()
		rr.mu.Lock()
		stopped := rr.stopped
		rr.mu.Unlock()
		if stopped {
			return
		}
		if p, err := rr.startAgent(d, filepath.Join(d.DataDir, "current", "flotilla-agent")); err != nil {
			rr.logf("%s: restart failed: %v", d.Name, err)
		} else {
			rr.logf("%s: agent restarted from current (pid %d)", d.Name, p.PID)
		}
	})
}

// ---- steps and faults -----------------------------------------------------------

func (rr *realRun) beginFault(kind string) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.pending++
	rr.fired[kind]++
}

func (rr *realRun) endFault() {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.pending--
}

func (rr *realRun) at(d time.Duration, fn func()) {
	time.AfterFunc(time.Until(rr.start.Add(d)), func() {
		rr.mu.Lock()
		stopped := rr.stopped
		rr.mu.Unlock()
		if !stopped {
			fn()
		}
	})
}

func (rr *realRun) selectDevices(f *scenario.Fault) map[string]bool {
	if len(f.Names) == 0 && len(f.Selector) == 0 {
		return nil
	}
	out := map[string]bool{}
	for name, l := range rr.labels {
		if len(f.Names) > 0 && !slices.Contains(f.Names, name) {
			continue
		}
		ok := true
		for k, v := range f.Selector {
			ok = ok && l[k] == v
		}
		if ok {
			out[name] = true
		}
	}
	return out
}

func (rr *realRun) schedule() error {
	for i := range rr.sc.Steps {
		st := &rr.sc.Steps[i]
		rr.at(st.At.D, func() { rr.upgradeAgent(st.UpgradeAgent) })
	}
	for i := range rr.sc.Faults {
		f := &rr.sc.Faults[i]
		devs := rr.selectDevices(f)
		switch {
		case f.Kind == scenario.FaultOutage:
			rr.at(f.At.D, func() {
				rr.beginFault(f.Kind)
				rr.logf("nats-server stopped")
				rr.srv.Stop()
				time.AfterFunc(f.For.D, func() {
					defer rr.endFault()
					if err := rr.srv.Start(); err != nil {
						rr.logf("nats-server start: %v", err)
					}
					rr.logf("nats-server started")
				})
			})
		case f.When != "":
			t := &realTrigger{f: f, devs: devs, left: map[string]int{}, total: f.Count}
			rr.triggers = append(rr.triggers, t)
		default:
			rr.at(f.At.D, func() {
				if f.Kind == scenario.FaultOperatorCrash {
					rr.crashOperator(f)
					return
				}
				for _, d := range rr.devs {
					if devs == nil || devs[d.Name] {
						rr.deviceFault(f, d)
					}
				}
			})
		}
	}
	return nil
}

func (rr *realRun) upgradeAgent(u *scenario.UpgradeAgent) {
	b := rr.env.Builds[u.Version]
	spec := opcore.AgentRolloutSpec{Name: u.Name, Generation: 1, Version: b.Version, Artifact: b.Ref,
		Selector: core.LabelSelector{MatchLabels: u.Selector}, Rollout: sim.Strategy(u.Strategy)}
	rr.mu.Lock()
	rr.rollouts = append(rr.rollouts, spec)
	rr.mu.Unlock()
	rr.obs.rolloutSeen(spec)
	rr.store.PutAgentRollout(spec)
	rr.logf("AgentRollout %s → %s", u.Name, u.Version)
}

func downOr(f *scenario.Fault, def time.Duration) time.Duration {
	if f.Down.Set {
		return f.Down.D
	}
	return def
}

// deviceFault carries out an agent crash or a power cut on d; the agent is
// restarted from current after down.
func (rr *realRun) deviceFault(f *scenario.Fault, d *agenttest.Device) {
	switch f.Kind {
	case scenario.FaultAgentCrash:
		rr.beginFault(f.Kind)
		if !rr.crashAgent(d) {
			rr.endFault()
			rr.mu.Lock()
			rr.fired[f.Kind]--
			rr.mu.Unlock()
			return
		}
		rr.obs.checkDisk(d.Name, diskOf(d, &rr.sums))
		rr.reboot(d, downOr(f, 3*time.Second))
	case scenario.FaultPowerCut:
		rr.beginFault(f.Kind)
		rr.powerCut(d)
		rr.obs.checkDisk(d.Name, diskOf(d, &rr.sums))
		rr.reboot(d, downOr(f, 30*time.Second))
	}
}

func (rr *realRun) crashOperator(f *scenario.Fault) {
	rr.beginFault(f.Kind)
	rr.logf("operator crash")
	rr.stopOperator()
	time.AfterFunc(downOr(f, 15*time.Second), func() {
		defer rr.endFault()
		rr.mu.Lock()
		stopped := rr.stopped
		rr.mu.Unlock()
		if !stopped {
			rr.logf("operator starting again")
			rr.startOperator()
		}
	})
}

// phaseEntered fires phase triggers when a device reports an upgrade phase
// (the observer saw the status on the wire).
func (rr *realRun) phaseEntered(device string, st core.UpgradeStatus) {
	rr.mu.Lock()
	if rr.stopped {
		rr.mu.Unlock()
		return
	}
	var fire []*realTrigger
	for _, t := range rr.triggers {
		if string(st.Phase) != t.f.When || time.Since(rr.start) < t.f.At.D {
			continue
		}
		if t.f.Kind == scenario.FaultOperatorCrash && t.devs == nil {
			if t.total <= 0 {
				continue
			}
			t.total--
			fire = append(fire, t)
			continue
		}
		if t.devs != nil && !t.devs[device] {
			continue
		}
		n, seen := t.left[device]
		if !seen {
			n = t.f.Count
		}
		if n <= 0 {
			continue
		}
		t.left[device] = n - 1
		fire = append(fire, t)
	}
	rr.mu.Unlock()
	for _, t := range fire {
		rr.logf("%s reported %s (attempt %d): %s", device, st.Phase, st.Attempt, t.f.Kind)
		if t.f.Kind == scenario.FaultOperatorCrash {
			go rr.crashOperator(t.f)
			continue
		}
		if d := rr.device(device); d != nil {
			// On its own goroutine: the observer goes on seeing (and
			// triggering on) other devices meanwhile.
			go rr.deviceFault(t.f, d)
		}
	}
}

// ---- invariant 1 ---------------------------------------------------------------

type diskView struct {
	d    *agenttest.Device
	sums *agenttest.SumCache
}

func diskOf(d *agenttest.Device, sums *agenttest.SumCache) diskView { return diskView{d, sums} }

func (v diskView) Current() (core.Version, bool)  { return v.d.CurrentLink() }
func (v diskView) Runnable(ver core.Version) bool { return v.d.Verified(ver, v.sums) }

func (rr *realRun) checkDisks(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, d := range rr.devs {
				rr.obs.checkDisk(d.Name, diskOf(d, &rr.sums))
			}
		}
	}
}

// ---- convergence and outcome ----------------------------------------------------

func (rr *realRun) kvGet(ctx context.Context, bucket, key string) []byte {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	kv, err := rr.js.KeyValue(ctx, bucket)
	if err != nil {
		return nil
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return nil
	}
	return e.Value()
}

func (rr *realRun) rolloutPaused(name string) bool {
	r, ok := rr.store.AgentRollout(name)
	return ok && slices.Contains(RolloutConditions(r.Status.Conditions), opcore.CondPaused)
}

// deviceConverged mirrors the simulator's: an active agent heartbeating,
// no candidate left, and for every rollout selecting the device either its
// target running, or the attempt of its marker failed or rolled back, or no
// marker and the rollout paused.
func (rr *realRun) deviceConverged(ctx context.Context, d *agenttest.Device) (bool, string) {
	if d.ActivePID() == 0 {
		return false, "no active agent"
	}
	if c := d.OtherAgents(); len(c) > 0 {
		return false, fmt.Sprintf("agent processes besides the active one still running (candidates or orphans): %v", c)
	}
	hb, ok, _, _, _, _ := rr.obs.snapshot(d.Name)
	if !ok || time.Since(hb.at) > 3*rr.sc.Fleet.HeartbeatInterval.D+time.Second {
		return false, "no recent heartbeat"
	}
	rr.mu.Lock()
	rollouts := slices.Clone(rr.rollouts)
	rr.mu.Unlock()
	for _, r := range rollouts {
		if !r.Selector.Matches(rr.labels[d.Name]) || hb.hb.AgentVersion.Compare(r.Version) == 0 {
			continue
		}
		mb := rr.kvGet(ctx, core.BucketAgentUpgrade, core.AgentUpgradeKey(d.Name))
		if mb == nil {
			if rr.rolloutPaused(r.Name) {
				continue
			}
			return false, "no upgrade marker yet (rollout not paused)"
		}
		m, err := core.DecodeUpgradeMarker(mb)
		if err != nil {
			return false, "undecodable marker"
		}
		st, err := core.DecodeUpgradeStatus(rr.kvGet(ctx, core.BucketAgentUpgradeStatus, core.AgentUpgradeStatusKey(d.Name)))
		if err != nil {
			return false, "no upgrade status"
		}
		if st.Attempt != m.Attempt {
			return false, fmt.Sprintf("status is for attempt %d, marker for %d", st.Attempt, m.Attempt)
		}
		if st.Phase != core.UpgradeFailed && st.Phase != core.UpgradeRolledBack {
			return false, fmt.Sprintf("attempt %d is %s, running %s", st.Attempt, st.Phase, hb.hb.AgentVersion)
		}
	}
	return true, ""
}

func (rr *realRun) converged(ctx context.Context) (bool, []string) {
	if !rr.operatorConverged() {
		return false, []string{"operator not converged"}
	}
	rr.mu.Lock()
	pending := rr.pending
	rr.mu.Unlock()
	if pending > 0 {
		return false, []string{fmt.Sprintf("%d fault(s) not over", pending)}
	}
	var bad []string
	for _, d := range rr.devs {
		if ok, why := rr.deviceConverged(ctx, d); !ok {
			bad = append(bad, d.Name+": "+why)
		}
	}
	return len(bad) == 0, bad
}

// waitConverged waits for the fault window to end, then until the run has
// converged (twice in a row, half a second apart) or the settle time ran out.
func (rr *realRun) waitConverged(ctx context.Context) bool {
	end := rr.start.Add(rr.sc.FaultWindowEnd())
	settle := rr.sc.Expect.ConvergedWithin.D
	if rr.env.Settle > 0 && rr.env.Settle < settle {
		settle = rr.env.Settle
	}
	deadline := end.Add(settle)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Until(end)):
	}
	streak := 0
	var why []string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var ok bool
		ok, why = rr.converged(ctx)
		if ok {
			streak++
			if streak >= 2 {
				rr.logf("converged")
				return true
			}
		} else {
			streak = 0
		}
		time.Sleep(500 * time.Millisecond)
	}
	rr.logf("did not converge within %v after the fault window: %s", settle, strings.Join(why, "; "))
	return false
}

func (rr *realRun) outcome(ctx context.Context, converged bool) *Outcome {
	o := &Outcome{Converged: converged, Devices: map[string]Device{}, Rollouts: map[string][]string{},
		Violations: rr.obs.violations(), FaultsFired: map[string]uint64{}}
	for _, d := range rr.devs {
		dev := Device{Version: "none"}
		if d.ActivePID() != 0 {
			if hb, err := core.DecodeHeartbeat(rr.kvGet(ctx, core.BucketDeviceHeartbeat, core.HeartbeatKey(d.Name))); err == nil {
				dev.Version = hb.AgentVersion.String()
			}
		}
		if st, err := core.DecodeUpgradeStatus(rr.kvGet(ctx, core.BucketAgentUpgradeStatus, core.AgentUpgradeStatusKey(d.Name))); err == nil {
			dev.Phase, dev.Reason, dev.Attempt = st.Phase, st.Reason, st.Attempt
		}
		o.Devices[d.Name] = dev
	}
	if converged {
		o.Notes = append(o.Notes, fmt.Sprintf("real: converged at %.1fs", time.Since(rr.start).Seconds()))
	} else {
		for _, d := range rr.devs {
			o.Notes = append(o.Notes, fmt.Sprintf("--- %s agent.log (tail) ---\n%s", d.Name, d.LogTail(12)))
			if ok, _ := rr.deviceConverged(ctx, d); !ok {
				rr.dumpGoroutines(d)
			}
		}
	}
	rr.mu.Lock()
	for _, r := range rr.rollouts {
		if s, ok := rr.store.AgentRollout(r.Name); ok {
			o.Rollouts[r.Name] = RolloutConditions(s.Status.Conditions)
		}
	}
	for k, v := range rr.fired {
		o.FaultsFired[k] = v
	}
	rr.mu.Unlock()
	o.Observed = rr.obs.counts()
	return o
}
