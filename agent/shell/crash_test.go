package shell

// Crash-point tests: an old agent (this test binary in helper mode, driving
// the real agent core, journal and executor on a real temp dir) upgrades
// v1 → v2 — committed, or rolled back because the candidate crashes — and
// is SIGKILLed right after its k-th effect, or inside a swap or a download,
// for every k. A new process then starts from what is on
// disk — as the service manager would start current/flotilla-agent — and
// runs recovery until it is quiet (following a Reexec to the version it
// names). Every time, current must point at a verified binary, the journal
// must read cleanly with every attempt ended, and current must match the
// journal's verdict (v2 only if attempt 1 committed).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/agent/executor"
	"github.com/flotilla-fleet/flotilla/agent/journal"
	"github.com/flotilla-fleet/flotilla/agent/link"
	"github.com/flotilla-fleet/flotilla/agent/runtime"
	"github.com/flotilla-fleet/flotilla/core"
)

// fakeAgent is the "binary" of each version: it passes --self-test; as a
// candidate it runs the scenario's command (sleeps, or crashes at once);
// otherwise (after a re-exec) it exits 0.
const fakeAgent = "#!/bin/sh\n# %s\ncase \"$*\" in *--self-test*) exit 0;; *--candidate-attempt*) %s;; esac\nexit 0\n"

// candidateAction is what the v2 candidate does in a scenario.
func candidateAction(scenario string) string {
	if scenario == "rollback" {
		return "exit 70"
	}
	return "exec sleep 60 >/dev/null 2>&1"
}

func TestMain(m *testing.M) {
	if mode := os.Getenv("FLOTILLA_CRASH_HELPER"); mode != "" {
		os.Exit(crashHelper(mode))
	}
	os.Exit(m.Run())
}

type fixedSource []byte

func (f fixedSource) Open(context.Context, core.ArtifactRef) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(f))), nil
}

func v2Bytes() []byte {
	return []byte(fmt.Sprintf(fakeAgent, "v2.0.0", candidateAction(os.Getenv("FLOTILLA_SCENARIO"))))
}

func v2Ref() core.ArtifactRef {
	sum := sha256.Sum256(v2Bytes())
	return core.ArtifactRef{Object: "flotilla-agent/v2.0.0", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(v2Bytes()))}
}

// crashHelper runs one agent process against FLOTILLA_DIR. mode "upgrade"
// runs the whole upgrade (killing itself at FLOTILLA_KILL_AT); mode
// "recover" delivers Start and runs until quiet. Exit status 10 + a line
// "reexec <v>" on stdout reports a Reexec.
func crashHelper(mode string) int {
	dir := os.Getenv("FLOTILLA_DIR")
	self := core.MustParseVersion(os.Getenv("FLOTILLA_VERSION"))
	killAt := os.Getenv("FLOTILLA_KILL_AT")
	var n atomic.Int64
	hook := func(step string) {
		k := n.Add(1)
		if killAt == step || killAt == strconv.FormatInt(k, 10) {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Hour)
		}
	}
	lay := executor.Layout{Dir: dir}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ex := &executor.Executor{Layout: lay, Source: fixedSource(v2Bytes()), Log: log, Hook: hook,
		Launcher: &executor.ProcessLauncher{RunDir: lay.RunDir(), Grace: time.Second}}
	mgr := runtime.NewManager(core.RuntimeProcess, func(runtime.Status) {}, log)
	bin, _ := lay.Binary(self)
	finished, waiting := false, false // the rollback scenario's upgrade ends at RolledBack
	s := New(Options{Device: "dev", Version: self, Core: agentcore.New(agentcore.Config{Device: "dev", Version: self}),
		Journal: journal.New(lay.Journal()), Executor: ex, Workload: mgr, Log: log, Self: bin})
	s.lk = link.New(link.Config{Device: "dev", Version: self, Core: s.o.Core,
		Observe: func(_ agentcore.Input, effs []agentcore.Effect) {
			for _, e := range effs {
				if st, ok := e.(agentcore.PutUpgradeStatus); ok && mode == "upgrade" {
					finished = finished || st.Status.Phase == core.UpgradeRolledBack
					waiting = waiting || st.Status.Phase == core.UpgradeWaitingForStop && os.Getenv("FLOTILLA_SCENARIO") != "rollback"
				}
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.io = ctx

	start, err := s.startInput()
	if err != nil {
		fmt.Println("start:", err)
		return 2
	}
	// Every action that carries out a core effect is a crash point. NATS
	// plays no part (the helper never connects) and neither do timers.
	var step func(ev link.Event) (bool, int)
	step = func(ev link.Event) (bool, int) {
		for ev.Kind != 0 {
			acts := s.lk.Step(time.Now(), ev)
			ev = link.Event{}
			for i := range acts {
				a := &acts[i]
				switch a.Kind {
				case link.ActArmTimer:
					if a.Timer == link.TimerExit { // the outbox never drains here: exit at once
						ev = link.Fired(a.Timer, a.Gen)
					}
					continue
				case link.ActConnect, link.ActCancelTimer, link.ActBecomeActive, link.ActWrite, link.ActCreateWatch:
					continue
				case link.ActExit:
					if r, ok := a.Effect.(agentcore.Reexec); ok {
						fmt.Println("reexec", r.Version)
						return true, 10
					}
				}
				next, end, code, _ := s.do(a)
				if end {
					return true, code
				}
				if a.Kind == link.ActInline || a.Kind == link.ActRun && !isLog(a.Effect) {
					hook("effect")
				}
				if next.Kind != 0 {
					ev = next
				}
			}
		}
		if finished {
			return true, 0
		}
		if waiting {
			waiting = false
			body, _ := core.CommandRequest{Schema: 1, Verb: core.VerbUpgradeStop, ID: "stop-1",
				UpgradeStop: &core.UpgradeStopArgs{Attempt: 1, TargetVersion: core.MustParseVersion("v2.0.0")}}.Encode()
			return step(link.Command(core.CommandSubject("dev", core.VerbUpgradeStop), body, nil))
		}
		return false, 0
	}
	if done, code := step(link.Started(start)); done {
		return code
	}
	if mode == "upgrade" {
		m, _ := core.UpgradeMarker{Schema: 1, Attempt: 1, TargetVersion: core.MustParseVersion("v2.0.0"),
			Artifact: v2Ref(), CutoverTimeoutSec: 60}.Encode()
		s.lk.Step(time.Now(), link.Conn(true)) // the watches' creations are not carried out
		var gen uint32 = 1
		if done, code := step(link.WatchEntry(link.WatchMarker, gen, link.Entry{Key: core.AgentUpgradeKey("dev"), Value: m, Rev: 1})); done {
			return code
		}
	}
	quiet := 300 * time.Millisecond // recovery is done when nothing happens for this long
	if mode == "upgrade" {
		quiet = 20 * time.Second // a stuck upgrade, not a finished one
	}
	for {
		select {
		case ev := <-s.events:
			if done, code := step(ev); done {
				return code
			}
		case <-time.After(quiet):
			if mode == "upgrade" {
				fmt.Println("upgrade did not finish")
				return 3
			}
			return 0 // quiet: recovery is done
		}
	}
}

func isLog(e agentcore.Effect) bool { _, ok := e.(agentcore.Log); return ok }

func runHelper(t *testing.T, scenario, dir, mode, version, killAt string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FLOTILLA_CRASH_HELPER="+mode, "FLOTILLA_DIR="+dir,
		"FLOTILLA_VERSION="+version, "FLOTILLA_KILL_AT="+killAt, "FLOTILLA_SCENARIO="+scenario)
	// A file, not a pipe: candidates inherit the helper's stdout and outlive it.
	f, ferr := os.CreateTemp(t.TempDir(), "helper-out")
	if ferr != nil {
		t.Fatal(ferr)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	err := cmd.Run()
	outb, _ := os.ReadFile(f.Name())
	out := string(outb)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = -int(ws.Signal())
		}
	} else if err != nil {
		t.Fatalf("helper: %v", err)
	}
	return code, out
}

// freshInstall lays out a device running v1: versions/v1.0.0 and current.
func freshInstall(t *testing.T) string {
	dir := t.TempDir()
	lay := executor.Layout{Dir: dir}
	if err := lay.Init(); err != nil {
		t.Fatal(err)
	}
	bin, _ := lay.Binary(core.MustParseVersion("v1.0.0"))
	os.MkdirAll(filepath.Dir(bin), 0o755)
	body := []byte(fmt.Sprintf(fakeAgent, "v1.0.0", candidateAction("")))
	os.WriteFile(bin, body, 0o755)
	sum := sha256.Sum256(body)
	os.WriteFile(bin+".sha256", []byte(hex.EncodeToString(sum[:])+"\n"), 0o644)
	if err := lay.SwapCurrent(core.MustParseVersion("v1.0.0"), nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func killCandidates(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "run", "candidate-*.pid"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if pid > 1 && strings.Contains(string(cmdline), "--candidate-attempt=") {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// TestCrashAtEveryStepOfACommittedUpgrade: v1 → v2, the operator's
// upgrade-stop arrives, the old agent commits and exits.
func TestCrashAtEveryStepOfACommittedUpgrade(t *testing.T) {
	crashAtEveryStep(t, "commit", agentcore.RecCommitted)
}

// TestCrashAtEveryStepOfARollback: the v2 candidate crashes at start, the
// old agent reverts.
func TestCrashAtEveryStepOfARollback(t *testing.T) {
	crashAtEveryStep(t, "rollback", agentcore.RecReverted)
}

func crashAtEveryStep(t *testing.T, scenario string, wantLast agentcore.RecordKind) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	// A clean run counts the crash points.
	dir := freshInstall(t)
	code, out := runHelper(t, scenario, dir, "upgrade", "v1.0.0", "")
	killCandidates(dir)
	if code != 0 {
		t.Fatalf("clean upgrade ended with %d: %s", code, out)
	}
	recs, _ := journal.Read(executor.Layout{Dir: dir}.Journal())
	if len(recs) == 0 || recs[len(recs)-1].Kind != wantLast {
		t.Fatalf("clean %s journal ends %+v, want %s", scenario, recs, wantLast)
	}
	checkConsistent(t, executor.Layout{Dir: dir})
	effects := 0
	for probe := 1; probe < 200; probe++ {
		d := freshInstall(t)
		c, _ := runHelper(t, scenario, d, "upgrade", "v1.0.0", strconv.Itoa(probe))
		killCandidates(d)
		if c != -int(syscall.SIGKILL) {
			effects = probe - 1
			break
		}
	}
	if effects < 8 {
		t.Fatalf("only %d crash points found", effects)
	}
	points := []string{"fetch:done", "swap:linked", "swap:renamed"}
	for k := 1; k <= effects; k++ {
		points = append(points, strconv.Itoa(k))
	}
	t.Logf("%s: %d crash points", scenario, len(points))
	for _, at := range points {
		t.Run("kill-at-"+strings.ReplaceAll(at, ":", "-"), func(t *testing.T) {
			t.Parallel()
			dir := freshInstall(t)
			defer killCandidates(dir)
			lay := executor.Layout{Dir: dir}
			if c, out := runHelper(t, scenario, dir, "upgrade", "v1.0.0", at); c != -int(syscall.SIGKILL) {
				t.Fatalf("helper was not killed at %s (exit %d): %s", at, c, out)
			}
			// Restart from current, following re-execs, as a service
			// manager would.
			for i := 0; i < 3; i++ {
				cur, err := lay.CurrentVersion()
				if err != nil || cur.IsZero() {
					t.Fatalf("after kill at %s: current is %v (%v)", at, cur, err)
				}
				c, out := runHelper(t, scenario, dir, "recover", cur.String(), "")
				if c == 0 {
					break
				}
				if c != 10 {
					t.Fatalf("recovery as %s exited %d: %s", cur, c, out)
				}
				// Reexec: the process becomes the version it named.
				v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "reexec"))
				if c, out := runHelper(t, scenario, dir, "recover", v, ""); c != 0 {
					t.Fatalf("recovery after re-exec as %s exited %d: %s", v, c, out)
				}
				break
			}
			checkConsistent(t, lay)
		})
	}
}

func checkConsistent(t *testing.T, lay executor.Layout) {
	t.Helper()
	cur, err := lay.CurrentVersion()
	if err != nil || cur.IsZero() {
		t.Fatalf("current: %v %v", cur, err)
	}
	bin, _ := lay.Binary(cur)
	sum, err := executor.FileSHA256(bin)
	if err != nil {
		t.Fatalf("current binary: %v", err)
	}
	want, _ := os.ReadFile(bin + ".sha256")
	if strings.TrimSpace(string(want)) != sum {
		t.Fatalf("current binary %s does not match its recorded SHA-256", bin)
	}
	recs, err := journal.Read(lay.Journal())
	if err != nil {
		t.Fatalf("journal: %v", err)
	}
	open := map[uint32]agentcore.RecordKind{}
	committed := false
	for _, r := range recs {
		if r.Attempt == 0 {
			continue
		}
		switch r.Kind {
		case agentcore.RecCommitted:
			committed = true
			delete(open, r.Attempt)
		case agentcore.RecReverted, agentcore.RecFailed:
			delete(open, r.Attempt)
		default:
			open[r.Attempt] = r.Kind
		}
	}
	if len(open) > 0 {
		t.Fatalf("attempts left open: %v; journal %+v", open, recs)
	}
	want2 := "v1.0.0"
	if committed {
		want2 = "v2.0.0"
	}
	if cur.String() != want2 {
		t.Fatalf("current = %s but the journal says %s should run (committed=%v)", cur, want2, committed)
	}
}
