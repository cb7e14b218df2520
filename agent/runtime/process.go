package runtime

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/executor"
	"github.com/flotilla-fleet/flotilla/core"
)

// Log files are cut when they pass MaxLogBytes: the current file is copied
// to output.log.1 and truncated. Lines written between the copy and the
// truncation can be lost; the workload keeps its open descriptor.
const MaxLogBytes = 1 << 20

// Process runs each workload as a supervised child process in its own
// process group, with its output appended to workloads/<deployment>/output.log.
//
// The program is the artifact (downloaded and verified into
// workloads/<deployment>/<version>/<name>) run with spec.Args, or, without an
// artifact, spec.Args[0] from the device. A workload that exits is restarted
// with exponential backoff (1s doubling to 30s, reset after a minute up) and
// reported Failed meanwhile. Stop sends SIGTERM to the group, waits Grace,
// then SIGKILL.
//
// Workloads outlive the agent process: the PID and start time are recorded
// in workloads/<deployment>/state.json and a new agent adopts a process that
// is still alive (watching it by polling), so an agent upgrade does not
// restart workloads.
type Process struct {
	Dir       string // workloads directory
	Source    executor.Source
	PublicKey ed25519.PublicKey
	Grace     time.Duration
	OnStatus  func(Status)
	Log       *slog.Logger

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	spec    core.WorkloadSpec
	pid     int
	start   uint64 // /proc start time, to tell a reused PID apart
	stop    chan struct{}
	done    chan struct{} // closed when supervision has ended
	stopped bool
}

type stateFile struct {
	PID   int             `json:"pid"`
	Start uint64          `json:"start"`
	Spec  json.RawMessage `json:"spec"`
}

// NewProcess returns the process runtime. It supervises nothing until
// Adopt or Start: an upgrade candidate must not touch workloads.
func NewProcess(p *Process) *Process {
	p.procs = map[string]*proc{}
	return p
}

// Adopt takes over workloads left running by an earlier agent process (their
// PID still has the recorded start time) and returns their deployments.
func (p *Process) Adopt() []string {
	ents, _ := os.ReadDir(p.Dir)
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dep := e.Name()
		p.mu.Lock()
		_, have := p.procs[dep]
		p.mu.Unlock()
		if have {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.Dir, dep, "state.json"))
		if err != nil {
			continue
		}
		var st stateFile
		if json.Unmarshal(b, &st) != nil {
			continue
		}
		spec, err := core.DecodeWorkloadSpec(st.Spec)
		if err != nil || spec.Deployment != dep || st.Start == 0 || procStart(st.PID) != st.Start {
			_ = os.Remove(filepath.Join(p.Dir, dep, "state.json"))
			continue
		}
		pr := &proc{spec: spec, pid: st.PID, start: st.Start, stop: make(chan struct{}), done: make(chan struct{})}
		p.mu.Lock()
		p.procs[dep] = pr
		p.mu.Unlock()
		go p.supervise(pr, nil)
		out = append(out, dep)
		p.logger().Info("adopted workload", "deployment", dep, "pid", st.PID, "version", spec.Version)
	}
	return out
}

func (p *Process) logger() *slog.Logger {
	if p.Log == nil {
		return slog.Default()
	}
	return p.Log
}

// Kind implements Runtime.
func (p *Process) Kind() core.Runtime { return core.RuntimeProcess }

// Running implements Runtime.
func (p *Process) Running() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for d := range p.procs {
		out = append(out, d)
	}
	return out
}

// Start implements Runtime.
func (p *Process) Start(ctx context.Context, spec core.WorkloadSpec) error {
	if err := core.ValidateDeploymentName(spec.Deployment); err != nil {
		return err
	}
	p.mu.Lock()
	cur := p.procs[spec.Deployment]
	p.mu.Unlock()
	if cur != nil && sameWorkload(cur.spec, spec) {
		cur.spec = spec
		p.status(spec, core.PhaseRunning, "")
		return nil
	}
	prog, args, err := p.program(ctx, spec)
	if err != nil {
		return err
	}
	if cur != nil {
		if err := p.Stop(ctx, spec.Deployment); err != nil {
			return err
		}
	}
	pr := &proc{spec: spec, stop: make(chan struct{}), done: make(chan struct{})}
	cmd, err := p.launch(pr, prog, args)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.procs[spec.Deployment] = pr
	p.mu.Unlock()
	p.status(spec, core.PhaseRunning, "")
	go p.supervise(pr, &launchInfo{cmd: cmd, prog: prog, args: args})
	return nil
}

// sameWorkload ignores the generation: a new generation that asks for the
// same program is not a reason to restart it.
func sameWorkload(a, b core.WorkloadSpec) bool {
	a.Generation, b.Generation = 0, 0
	return a.Equal(b)
}

func (p *Process) program(ctx context.Context, spec core.WorkloadSpec) (string, []string, error) {
	if spec.Artifact == nil {
		if len(spec.Args) == 0 {
			return "", nil, errors.New("process runtime: the spec has neither an artifact nor args naming a program")
		}
		return spec.Args[0], spec.Args[1:], nil
	}
	for _, c := range []string{spec.Version, spec.Name} {
		if c == "." || c == ".." || strings.ContainsAny(c, "/\\\x00") {
			return "", nil, fmt.Errorf("process runtime: %q is not a safe path component", c)
		}
	}
	path := filepath.Join(p.Dir, spec.Deployment, spec.Version, spec.Name)
	if err := executor.Fetch(ctx, p.Source, *spec.Artifact, path, p.PublicKey); err != nil {
		return "", nil, fmt.Errorf("workload artifact: %w", err)
	}
	return path, spec.Args, nil
}

type launchInfo struct {
	cmd        *exec.Cmd
	prog       string
	args       []string
	restartErr error
}

func (p *Process) launch(pr *proc, prog string, args []string) (*exec.Cmd, error) {
	dir := filepath.Join(p.Dir, pr.spec.Deployment)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(filepath.Join(dir, "output.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(prog, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"FLOTILLA_DEPLOYMENT=" + pr.spec.Deployment, "FLOTILLA_WORKLOAD_VERSION=" + pr.spec.Version}
	for _, k := range core.SortedKeys(pr.spec.Env) {
		cmd.Env = append(cmd.Env, k+"="+pr.spec.Env[k])
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", prog, err)
	}
	pr.pid = cmd.Process.Pid
	pr.start = procStart(pr.pid)
	spec, _ := pr.spec.Encode()
	st, _ := json.Marshal(stateFile{PID: pr.pid, Start: pr.start, Spec: spec})
	tmp := filepath.Join(dir, "state.json.tmp")
	if err := os.WriteFile(tmp, st, 0o644); err == nil {
		_ = os.Rename(tmp, filepath.Join(dir, "state.json"))
	}
	return cmd, nil
}

// supervise waits for the process (child: Wait; adopted: poll), restarts it
// with backoff, and ends when Stop closes pr.stop.
func (p *Process) supervise(pr *proc, li *launchInfo) {
	defer close(pr.done)
	backoff := time.Second
	for {
		began := time.Now()
		exited := make(chan string, 1)
		if li != nil {
			cmd := li.cmd
			go func() {
				err := cmd.Wait()
				if err == nil {
					exited <- "exited with status 0"
				} else {
					exited <- err.Error()
				}
			}()
		} else {
			pid, start := pr.pid, pr.start
			go func() {
				for procStart(pid) == start {
					select {
					case <-pr.stop:
						return
					case <-time.After(time.Second):
					}
				}
				exited <- "exited (adopted process)"
			}()
		}
		rotate := time.NewTicker(5 * time.Second)
		var why string
	wait:
		for {
			select {
			case why = <-exited:
				break wait
			case <-pr.stop:
				rotate.Stop()
				return
			case <-rotate.C:
				rotateLog(filepath.Join(p.Dir, pr.spec.Deployment, "output.log"))
			}
		}
		rotate.Stop()
		if time.Since(began) > time.Minute {
			backoff = time.Second
		}
		p.logger().Warn("workload exited; restarting", "deployment", pr.spec.Deployment, "why", why, "in", backoff)
		p.status(pr.spec, core.PhaseFailed, fmt.Sprintf("workload %s %s; restarting in %s", pr.spec.Version, why, backoff))
		select {
		case <-pr.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
		prog, args, err := p.program(context.Background(), pr.spec)
		if err == nil {
			var cmd *exec.Cmd
			if cmd, err = p.launch(pr, prog, args); err == nil {
				li = &launchInfo{cmd: cmd, prog: prog, args: args}
				p.status(pr.spec, core.PhaseRunning, "")
				continue
			}
		}
		p.status(pr.spec, core.PhaseFailed, "restart: "+err.Error())
		li = nil
		pr.pid, pr.start = 0, 1 // nothing to poll; next loop reports the exit at once
	}
}

// Stop implements Runtime.
func (p *Process) Stop(ctx context.Context, dep string) error {
	p.mu.Lock()
	pr := p.procs[dep]
	delete(p.procs, dep)
	p.mu.Unlock()
	if pr == nil {
		return nil
	}
	close(pr.stop)
	<-pr.done
	grace := p.Grace
	if pr.pid > 0 && procStart(pr.pid) == pr.start {
		_ = syscall.Kill(-pr.pid, syscall.SIGTERM)
		deadline := time.Now().Add(grace)
		for time.Now().Before(deadline) && alive(pr.pid, pr.start) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pr.pid, pr.start) {
			_ = syscall.Kill(-pr.pid, syscall.SIGKILL)
			for i := 0; i < 100 && alive(pr.pid, pr.start); i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pr.pid, &ws, syscall.WNOHANG, nil)
	}
	_ = os.Remove(filepath.Join(p.Dir, dep, "state.json"))
	return nil
}

// Detach ends supervision of every workload without stopping them: the
// agent calls it before it exits for an upgrade, so that the next agent
// adopts them.
func (p *Process) Detach() {
	p.mu.Lock()
	procs := p.procs
	p.procs = map[string]*proc{}
	p.mu.Unlock()
	for _, pr := range procs {
		close(pr.stop)
		<-pr.done
	}
}

// Logs implements Runtime.
func (p *Process) Logs(_ context.Context, dep string, n int) ([]string, bool, error) {
	if err := core.ValidateDeploymentName(dep); err != nil {
		return nil, false, err
	}
	base := filepath.Join(p.Dir, dep, "output.log")
	var data []byte
	for _, f := range []string{base + ".1", base} {
		b, err := os.ReadFile(f)
		if err == nil {
			data = append(data, b...)
		}
	}
	lines, trunc := LastLines(string(data), n)
	return lines, trunc, nil
}

func (p *Process) status(spec core.WorkloadSpec, phase core.WorkloadPhase, err string) {
	if p.OnStatus != nil {
		p.OnStatus(Status{Deployment: spec.Deployment, Generation: spec.Generation, Phase: phase,
			Err: core.Truncate(err, core.MaxErrorLen)})
	}
}

// LastLines returns the last n lines of s and whether there were more.
func LastLines(s string, n int) ([]string, bool) {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return []string{}, false
	}
	all := strings.Split(s, "\n")
	if len(all) <= n {
		return all, false
	}
	return all[len(all)-n:], true
}

func rotateLog(path string) {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() < MaxLogBytes {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if os.WriteFile(path+".1", b, 0o644) == nil {
		_ = os.Truncate(path, 0)
	}
}

// procStart returns a process's start time in clock ticks since boot (field
// 22 of /proc/<pid>/stat), or 0 when it does not exist.
func procStart(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); start time is field 22.
	if len(f) < 20 || f[0] == "Z" {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

func alive(pid int, start uint64) bool { return start != 0 && procStart(pid) == start }
