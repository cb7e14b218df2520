package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

type statusLog struct {
	mu  sync.Mutex
	all []Status
}

func (s *statusLog) add(st Status) { s.mu.Lock(); s.all = append(s.all, st); s.mu.Unlock() }
func (s *statusLog) waitFor(t *testing.T, pred func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, st := range s.all {
			if pred(st) {
				s.mu.Unlock()
				return st
			}
		}
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("status never seen; have %+v", s.all)
	return Status{}
}

func shSpec(dep, version, script string) core.WorkloadSpec {
	return core.WorkloadSpec{Schema: 1, Deployment: dep, Generation: 1, Name: "w", Version: version,
		Runtime: core.RuntimeProcess, Args: []string{"/bin/sh", "-c", script}}
}

func TestProcessRuntimeLifecycle(t *testing.T) {
	dir := t.TempDir()
	var sl statusLog
	p := NewProcess(&Process{Dir: dir, Grace: 300 * time.Millisecond, OnStatus: sl.add})
	ctx := context.Background()
	// A workload that ignores SIGTERM must be SIGKILLed after the grace.
	spec := shSpec("web", "1", `trap "" TERM; echo started $FLOTILLA_WORKLOAD_VERSION; while :; do sleep 0.05; done`)
	if err := p.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	sl.waitFor(t, func(s Status) bool { return s.Phase == core.PhaseRunning })
	deadline := time.Now().Add(5 * time.Second)
	var lines []string
	for time.Now().Before(deadline) {
		lines, _, _ = p.Logs(ctx, "web", 10)
		if len(lines) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(lines) != 1 || lines[0] != "started 1" {
		t.Fatalf("logs = %q", lines)
	}
	pid := p.procs["web"].pid
	began := time.Now()
	if err := p.Stop(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < 250*time.Millisecond {
		t.Fatalf("stop took %s: the grace period was not honoured", took)
	}
	if procStart(pid) != 0 {
		t.Fatal("workload still alive after Stop")
	}
	if _, err := os.Stat(filepath.Join(dir, "web", "state.json")); !os.IsNotExist(err) {
		t.Fatal("state file left after stop")
	}
}

func TestProcessRuntimeRestartsACrashedWorkload(t *testing.T) {
	dir := t.TempDir()
	var sl statusLog
	p := NewProcess(&Process{Dir: dir, Grace: time.Second, OnStatus: sl.add})
	if err := p.Start(context.Background(), shSpec("job", "1", "echo run; exit 3")); err != nil {
		t.Fatal(err)
	}
	st := sl.waitFor(t, func(s Status) bool { return s.Phase == core.PhaseFailed })
	if !strings.Contains(st.Err, "exit status 3") {
		t.Fatalf("failure reason %q does not name the exit status", st.Err)
	}
	time.Sleep(1500 * time.Millisecond)
	lines, _, _ := p.Logs(context.Background(), "job", 10)
	if len(lines) < 2 {
		t.Fatalf("not restarted: logs %q", lines)
	}
	p.Stop(context.Background(), "job")
}

func TestProcessRuntimeAdoptsWorkloadsOfAnEarlierAgent(t *testing.T) {
	dir := t.TempDir()
	var sl statusLog
	first := NewProcess(&Process{Dir: dir, Grace: time.Second, OnStatus: sl.add})
	spec := shSpec("db", "2", "sleep 30")
	if err := first.Start(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	pid := first.procs["db"].pid
	first.Detach()
	// A new agent process (same dir) finds and adopts it; starting the same
	// spec does not restart it.
	second := NewProcess(&Process{Dir: dir, Grace: time.Second, OnStatus: sl.add})
	if got := second.Running(); len(got) != 0 {
		t.Fatalf("supervising %v before Adopt", got)
	}
	if got := second.Adopt(); len(got) != 1 || got[0] != "db" {
		t.Fatalf("adopted %v", got)
	}
	spec.Generation = 2
	if err := second.Start(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if second.procs["db"].pid != pid {
		t.Fatal("identical spec restarted the workload")
	}
	if err := second.Stop(context.Background(), "db"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50 && procStart(pid) != 0; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if procStart(pid) != 0 {
		t.Fatal("adopted workload not stopped")
	}
}

func TestExecCapsOutputAndEnforcesTheDeadline(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		args   core.ExecArgs
		check  func(core.ExecResult) bool
		expect string
	}{
		{"exit code", core.ExecArgs{Command: []string{"/bin/sh", "-c", "echo hi; echo err >&2; exit 4"}, TimeoutMS: 5000, MaxOutput: core.MaxExecOutput},
			func(r core.ExecResult) bool {
				return r.ExitCode == 4 && r.Stdout == "hi\n" && r.Stderr == "err\n" && !r.Truncated
			}, "exit 4 with both streams"},
		{"cap", core.ExecArgs{Command: []string{"/bin/sh", "-c", "head -c 400000 /dev/zero"}, TimeoutMS: 5000, MaxOutput: core.MaxExecOutput},
			func(r core.ExecResult) bool { return len(r.Stdout) == core.MaxExecOutput && r.Truncated }, "256 KiB and truncated"},
		{"deadline", core.ExecArgs{Command: []string{"/bin/sh", "-c", "sleep 10 & wait"}, TimeoutMS: 200, MaxOutput: 100},
			func(r core.ExecResult) bool { return r.TimedOut }, "timed out"},
		{"missing program", core.ExecArgs{Command: []string{"/nonexistent"}, TimeoutMS: 1000, MaxOutput: 100},
			func(r core.ExecResult) bool { return r.ExitCode == -1 && strings.Contains(r.Stderr, "no such file") }, "exit -1 with the error"},
	}
	for _, c := range cases {
		began := time.Now()
		r := Exec(ctx, c.args)
		if !c.check(r) {
			t.Errorf("%s: got %+v (stdout %d bytes), want %s", c.name, r.ExitCode, len(r.Stdout), c.expect)
		}
		if time.Since(began) > 4*time.Second {
			t.Errorf("%s: took %s", c.name, time.Since(began))
		}
	}
}

func TestRingKeepsTheNewestLines(t *testing.T) {
	r := NewRing(3)
	r.Write([]byte("a\nb\nc\nd"))
	r.Write([]byte("\ne\n"))
	got, trunc := r.Last(10)
	if strings.Join(got, ",") != "c,d,e" || !trunc {
		t.Fatalf("got %v %v", got, trunc)
	}
	got, trunc = r.Last(2)
	if strings.Join(got, ",") != "d,e" || !trunc {
		t.Fatalf("got %v %v", got, trunc)
	}
}
