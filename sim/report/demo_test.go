package report

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// demoConfig drives a small synthetic rollout, standing in for the simulator
// so this package is proven on its own: devices upgrade their agent in waves
// limited by maxUnavailable, a partition stalls part of the fleet (devices
// waiting for upgrade-stop time out and roll back), some candidates crash
// after cutover and roll back, and the operator crashes once.
type demoConfig struct {
	name          string
	seed          uint64
	devices       int
	horizon       time.Duration
	crashRate     float64       // share of attempts whose candidate crashes after cutover
	partitionFrom time.Duration // partition of partitionShare of the fleet
	partitionFor  time.Duration
	partitionPct  int
	operatorCrash time.Duration
	violationAt   time.Duration // 0: none
}

type demoDevice struct {
	phase     core.AgentUpgradePhase
	version   string
	until     time.Duration // when the current phase ends
	crash     bool
	partition bool
}

func demoRun(cfg demoConfig) Run {
	const (
		from, to = "v1.0.0", "v1.1.0"
		step     = 5 * time.Second
		start    = 5 * time.Minute
	)
	rng := rand.New(rand.NewPCG(cfg.seed, 0x5eed))
	replay := fmt.Sprintf("flotilla sim replay scenarios/%s.yaml --seed %d", cfg.name, cfg.seed)
	rec := NewRecorder(Meta{Scenario: cfg.name, File: "scenarios/" + cfg.name + ".yaml", Seed: cfg.seed, Devices: cfg.devices, Replay: replay}, Options{})

	devs := make([]demoDevice, cfg.devices)
	versions := map[string]int{from: cfg.devices}
	phases := map[core.AgentUpgradePhase]int{core.UpgradeIdle: cfg.devices}
	for i := range devs {
		devs[i] = demoDevice{phase: core.UpgradeIdle, version: from, partition: (i*37)%100 < cfg.partitionPct}
	}
	setPhase := func(d *demoDevice, p core.AgentUpgradePhase) {
		phases[d.phase]--
		if phases[d.phase] == 0 {
			delete(phases, d.phase)
		}
		d.phase = p
		phases[p]++
	}
	setVersion := func(d *demoDevice, v string) {
		versions[d.version]--
		versions[v]++
		d.version = v
	}
	jitter := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }

	maxInFlight := max(1, cfg.devices/20) // maxUnavailable 5%
	waves := []int{cfg.devices / 100, cfg.devices / 10, cfg.devices / 2, cfg.devices}
	next, wave := 0, 0
	partitionEnd := cfg.partitionFrom + cfg.partitionFor
	pid := -1
	events := uint64(0)
	for now := time.Duration(0); now <= cfg.horizon; now += step {
		partitioned := now >= cfg.partitionFrom && now < partitionEnd
		online := cfg.devices
		if partitioned {
			online -= cfg.devices * cfg.partitionPct / 100
		}
		// Sample before handling the events at now: the counts held up to now.
		if rec.Due(now) {
			rec.Sample(now, versions, phases, online)
		}
		if cfg.violationAt > 0 && now >= cfg.violationAt {
			rec.Violate(Violation{Checker: "upgrade-stop-after-heartbeat", At: now, Seed: cfg.seed,
				Message: "operator sent upgrade-stop to dev-0042 (attempt 1) before observing a v1.1.0 heartbeat <from it>"})
			rec.Mark(now, "stop", "run stopped")
			rec.End(now, versions, phases, online)
			break
		}
		if now == cfg.partitionFrom && cfg.partitionFor > 0 {
			pid = rec.FaultStart("partition", fmt.Sprintf("%d%% of devices", cfg.partitionPct), now)
		}
		if now == partitionEnd && pid >= 0 {
			rec.FaultEnd(pid, now, uint64(rng.IntN(5000)))
		}
		if cfg.operatorCrash > 0 && now == cfg.operatorCrash {
			rec.Mark(now, "operator-crash", "operator crash")
		}
		if now == start {
			rec.Mark(now, "rollout", "upgrade to "+to)
		}
		operatorUp := cfg.operatorCrash == 0 || now < cfg.operatorCrash || now >= cfg.operatorCrash+2*time.Minute
		inFlight := 0
		for i := range devs {
			d := &devs[i]
			if d.phase.InFlight() {
				inFlight++
			}
			stalled := partitioned && d.partition
			if !d.phase.InFlight() || now < d.until {
				continue
			}
			events++
			switch d.phase {
			case core.UpgradeStaging:
				if stalled {
					continue // cannot download behind the partition
				}
				setPhase(d, core.UpgradeVerifying)
				d.until = now + jitter(10*time.Second, 30*time.Second)
			case core.UpgradeVerifying:
				setPhase(d, core.UpgradeCutoverReady)
				d.until = now + 5*time.Second
			case core.UpgradeCutoverReady:
				setPhase(d, core.UpgradeWaitingForStop)
				d.until = now + jitter(5*time.Second, 20*time.Second)
			case core.UpgradeWaitingForStop:
				switch {
				case d.crash:
					setPhase(d, core.UpgradeReverting)
					d.until = now + 20*time.Second
				case stalled || !operatorUp:
					// No upgrade-stop reaches the device: it reverts when
					// the cutover timeout runs out.
					if now >= d.until+core.DefaultCutoverTimeoutSec*time.Second {
						setPhase(d, core.UpgradeReverting)
						d.until = now + 20*time.Second
					}
				default:
					setPhase(d, core.UpgradeCommitted)
					setVersion(d, to)
				}
			case core.UpgradeReverting:
				setPhase(d, core.UpgradeRolledBack)
			}
		}
		if now < start || !operatorUp {
			continue
		}
		for wave < len(waves) && next >= waves[wave] && inFlight == 0 {
			wave++
		}
		for wave < len(waves) && next < waves[wave] && inFlight < maxInFlight {
			d := &devs[next]
			next++
			if d.partition && partitioned {
				continue // unreachable: the operator skips it this round
			}
			setPhase(d, core.UpgradeStaging)
			d.until = now + jitter(30*time.Second, 90*time.Second)
			d.crash = rng.Float64() < cfg.crashRate
			inFlight++
			events++
		}
	}
	rec.End(cfg.horizon, versions, phases, cfg.devices) // no-op after a violation ended the run
	if cfg.violationAt == 0 {
		rec.Expect(Expectation{Name: "agent_version v1.1.0 >= 90%", OK: versions[to]*10 >= cfg.devices*9,
			Detail: fmt.Sprintf("%d of %d devices on %s", versions[to], cfg.devices, to)})
	}
	// A deterministic stand-in for the wall time a real run measures.
	wall := time.Duration(events) * time.Duration(700+cfg.devices/2) * time.Nanosecond
	return rec.Finish(events*7, wall, "")
}

// demoReport is computed once: it is deterministic and tests only read it.
var demoReport = sync.OnceValue(func() Report {
	return Report{Runs: []Run{
		demoRun(demoConfig{
			name: "agent-upgrade-partition", seed: 7, devices: 1000, horizon: 90 * time.Minute, crashRate: 0.03,
			partitionFrom: 20 * time.Minute, partitionFor: 15 * time.Minute, partitionPct: 10, operatorCrash: 31 * time.Minute,
		}),
		demoRun(demoConfig{
			name: `flaky-network <script>alert("x")</script>`, seed: 1234567, devices: 300, horizon: 60 * time.Minute,
			crashRate: 0.02, partitionFrom: 10 * time.Minute, partitionFor: 5 * time.Minute, partitionPct: 20,
			violationAt: 23*time.Minute + 15*time.Second,
		}),
	}}
})

// TestDemoReport writes the demo report where FLOTILLA_REPORT_DEMO_DIR says
// (make sim-report-demo), so a person can open it; otherwise into a temp dir.
func TestDemoReport(t *testing.T) {
	dir := os.Getenv("FLOTILLA_REPORT_DEMO_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := demoReport()
	for name, write := range map[string]func(*os.File, Report) error{
		"sim-report-demo.html": func(f *os.File, r Report) error { return WriteHTML(f, r) },
		"sim-report-demo.png":  func(f *os.File, r Report) error { return WritePNG(f, r) },
		"sim-report-demo.svg":  func(f *os.File, r Report) error { return WriteSVG(f, r) },
	} {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := write(f, r); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil || st.Size() == 0 {
			t.Fatalf("%s: empty or missing (%v)", path, err)
		}
		t.Logf("wrote %s (%d bytes)", path, st.Size())
	}

	// The synthetic rollout behaves like one: most devices end on the new
	// version, the partition and the crashes left some rolled back.
	run := r.Runs[0]
	last := len(run.Times) - 1
	if got := run.Versions.Value("v1.1.0", last); got < 850 {
		t.Errorf("demo rollout: %d devices on v1.1.0 at the end, want most of 1000", got)
	}
	if got := run.Phases.Value(string(core.UpgradeRolledBack), last); got == 0 {
		t.Errorf("demo rollout: no device rolled back")
	}
	if run.Result != Pass || r.Runs[1].Result != Fail {
		t.Errorf("results = %s, %s; want pass, fail", run.Result, r.Runs[1].Result)
	}
}
