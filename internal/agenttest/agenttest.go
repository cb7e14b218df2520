// Package agenttest runs real flotilla-agent binaries for tests: it builds
// cmd/flotilla-agent at a version, lays out one device directory per agent
// (config, data dir, log), starts agents as child processes and ends every
// process of a device by PID (agents the test started, candidates the
// agents started, workloads). It is what the sim-versus-real suite
// (sim/simreal) needs of agent/integration's harness, without Ginkgo, so
// other suites can import it.
package agenttest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/agent/executor"
	"github.com/flotilla-fleet/flotilla/core"
)

// Build is one agent binary.
type Build struct {
	Version core.Version
	Fault   string
	Path    string
	Ref     core.ArtifactRef
}

// BuildAgent compiles cmd/flotilla-agent at version into dir, with an
// optional test fault (cmd/flotilla-agent: testFault). A binary already
// built there for the same version and fault is reused.
func BuildAgent(dir, version, fault string) (Build, error) {
	v, err := core.ParseVersion(version)
	if err != nil {
		return Build{}, err
	}
	name := "flotilla-agent-" + version
	if fault != "" {
		name += "-" + fault
	}
	out := filepath.Join(dir, name)
	if _, err := os.Stat(out); err != nil {
		ldflags := "-s -w -X main.version=" + version
		if fault != "" {
			ldflags += " -X main.testFault=" + fault
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out+".tmp",
			"github.com/flotilla-fleet/flotilla/cmd/flotilla-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return Build{}, fmt.Errorf("go build flotilla-agent %s: %w: %s", version, err, b)
		}
		if err := os.Rename(out+".tmp", out); err != nil {
			return Build{}, err
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return Build{}, err
	}
	sum := sha256.Sum256(data)
	return Build{Version: v, Fault: fault, Path: out, Ref: core.ArtifactRef{
		Object: core.ArtifactObjectName("flotilla-agent", version), SHA256: hex.EncodeToString(sum[:]),
		Size: int64(len(data))}}, nil
}

// UploadArtifact puts the file at path into the artifacts object store as
// name (creating the store when missing).
func UploadArtifact(ctx context.Context, js jetstream.JetStream, name, path string) error {
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: core.ObjectStoreArtifacts})
	if err != nil {
		return fmt.Errorf("object store %s: %w", core.ObjectStoreArtifacts, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: name}, f); err != nil {
		return fmt.Errorf("upload %s: %w", name, err)
	}
	return nil
}

// DeviceConfig is what goes into a device's agent.yaml.
type DeviceConfig struct {
	Name              string
	Labels            map[string]string
	NATSURL           string
	HeartbeatInterval time.Duration // default 500ms
	ExecAllowed       bool
}

// Device is one agent installation: its own directory, data dir and config.
type Device struct {
	Name    string
	Dir     string
	DataDir string
	Config  string
	LogPath string

	mu    sync.Mutex
	procs []*Proc
}

// Proc is an agent process this package started.
type Proc struct {
	PID  int
	Bin  string
	done chan struct{}
	// State is the exit state, set once Done is closed.
	State *os.ProcessState
}

// Done is closed when the process has exited (and been reaped).
func (p *Proc) Done() <-chan struct{} { return p.done }

// NewDevice creates root/<name> with data dir and agent.yaml.
func NewDevice(root string, c DeviceConfig) (*Device, error) {
	d := &Device{Name: c.Name, Dir: filepath.Join(root, c.Name)}
	d.DataDir = filepath.Join(d.Dir, "data")
	d.Config = filepath.Join(d.Dir, "agent.yaml")
	d.LogPath = filepath.Join(d.Dir, "agent.log")
	if err := os.MkdirAll(d.DataDir, 0o755); err != nil {
		return nil, err
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 500 * time.Millisecond
	}
	keys := make([]string, 0, len(c.Labels))
	for k := range c.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lbl []string
	for _, k := range keys {
		lbl = append(lbl, fmt.Sprintf("%q: %q", k, c.Labels[k]))
	}
	cfg := fmt.Sprintf(`device: %s
labels: {%s}
nats_url: %s
data_dir: %s
heartbeat_interval: %s
executor: process
runtime: process
exec_allowed: %v
workload_grace: 2s
`, c.Name, strings.Join(lbl, ", "), c.NATSURL, d.DataDir, c.HeartbeatInterval, c.ExecAllowed)
	if err := os.WriteFile(d.Config, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return d, nil
}

// Start runs bin as this device's agent (its own process group), output
// appended to agent.log.
func (d *Device) Start(bin string) (*Proc, error) {
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--config", d.Config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent of %s: %w", d.Name, err)
	}
	p := &Proc{PID: cmd.Process.Pid, Bin: bin, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.State = cmd.ProcessState
		close(p.done)
	}()
	d.mu.Lock()
	d.procs = append(d.procs, p)
	d.mu.Unlock()
	return p, nil
}

// InstallAndStart puts b where an installer would and starts it: a fresh
// install with no versions/ or current yet.
func (d *Device) InstallAndStart(b Build) (*Proc, error) {
	dst := filepath.Join(d.Dir, "install", "flotilla-agent")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(b.Path)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return nil, err
	}
	return d.Start(dst)
}

// StartCurrent starts the agent from data/current, as a service manager
// would after a crash or a reboot.
func (d *Device) StartCurrent() (*Proc, error) {
	return d.Start(filepath.Join(d.DataDir, "current", "flotilla-agent"))
}

// Procs returns the processes started so far.
func (d *Device) Procs() []*Proc {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*Proc(nil), d.procs...)
}

// ActivePID is the device's active agent, from run/agent.pid (0: none alive).
func (d *Device) ActivePID() int {
	pid := readPID(filepath.Join(d.DataDir, "run", "agent.pid"))
	if pid > 0 && !d.Ours(pid) {
		return 0
	}
	return pid
}

// CandidatePIDs lists live candidates (run/candidate-*.pid) other than the
// active agent.
func (d *Device) CandidatePIDs() []int {
	active := d.ActivePID()
	var out []int
	files, _ := filepath.Glob(filepath.Join(d.DataDir, "run", "candidate-*.pid"))
	for _, f := range files {
		if pid := readPID(f); pid != active && d.Ours(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// OtherAgents lists live agent processes of this device (a command line
// that runs a flotilla-agent from the device's directory) other than the
// active one: candidates, and orphans no pid file names.
func (d *Device) OtherAgents() []int {
	active := d.ActivePID()
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || pid == active {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		bin, _, _ := strings.Cut(string(cmdline), "\x00")
		if strings.HasPrefix(bin, d.Dir+"/") && filepath.Base(bin) == "flotilla-agent" && d.Ours(pid) {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Ours reports whether pid is alive (not a zombie) and is an agent or
// workload of this device (its command line or cwd names the device's
// directory).
func (d *Device) Ours(pid int) bool { return OwnedBy(pid, d.Dir) }

// OwnedBy reports whether pid is alive (not a zombie) and its command line
// or working directory names dir: how a harness recognises the processes of
// one device directory, by PID, without touching anything else.
func OwnedBy(pid int, dir string) bool {
	if pid <= 1 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	return strings.Contains(string(cmdline), dir) || strings.HasPrefix(cwd, dir)
}

// PIDs lists every live process of this device: agents this package
// started, agents started as candidates (run/*.pid), workloads, and any
// other process whose command line names the device's directory (an
// orphaned candidate no pid file names).
func (d *Device) PIDs() []int { return d.pids(true) }

func (d *Device) pids(scan bool) []int {
	seen := map[int]bool{}
	var out []int
	add := func(pid int) {
		if !seen[pid] && d.Ours(pid) {
			seen[pid] = true
			out = append(out, pid)
		}
	}
	if pid := d.ActivePID(); pid != 0 {
		add(pid)
	}
	for _, p := range d.Procs() {
		add(p.PID)
	}
	files, _ := filepath.Glob(filepath.Join(d.DataDir, "run", "*.pid"))
	for _, f := range files {
		add(readPID(f))
	}
	states, _ := filepath.Glob(filepath.Join(d.DataDir, "workloads", "*", "state.json"))
	for _, f := range states {
		b, _ := os.ReadFile(f)
		if i := strings.Index(string(b), `"pid":`); i >= 0 {
			rest := strings.TrimLeft(string(b)[i+6:], " ")
			if j := strings.IndexAny(rest, ",}"); j > 0 {
				pid, _ := strconv.Atoi(strings.TrimSpace(rest[:j]))
				add(pid)
			}
		}
	}
	if scan {
		procs, _ := filepath.Glob("/proc/[0-9]*")
		for _, p := range procs {
			if pid, err := strconv.Atoi(filepath.Base(p)); err == nil {
				cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
				if strings.Contains(string(cmdline), d.Dir+"/") {
					add(pid)
				}
			}
		}
	}
	return out
}

// KillAll sends SIGKILL to every process of the device (a power cut), the
// active agent first, and waits until none is left; before is called with
// each PID just before it is killed (nil: nothing). It returns the PIDs
// killed.
func (d *Device) KillAll(before func(pid int)) []int {
	var killed []int
	for round := 0; round < 50; round++ {
		pids := d.pids(round > 0) // the cheap list first: the kill lands at once
		if len(pids) == 0 {
			if round > 0 {
				break
			}
			continue
		}
		for _, pid := range pids {
			if before != nil {
				before(pid)
			}
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed = append(killed, pid)
			}
		}
		if round > 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return killed
}

// CurrentLink returns where current points (ok=false: missing or unreadable).
func (d *Device) CurrentLink() (core.Version, bool) {
	v, err := executor.Layout{Dir: d.DataDir}.CurrentVersion()
	if err != nil || v.IsZero() {
		return core.Version{}, false
	}
	return v, true
}

// Verified reports whether versions/<v>'s binary matches its recorded
// SHA-256 (sum caches hashes by path, size and modification time; nil: no
// cache).
func (d *Device) Verified(v core.Version, sum *SumCache) bool {
	bin, err := executor.Layout{Dir: d.DataDir}.Binary(v)
	if err != nil {
		return false
	}
	want, err := os.ReadFile(bin + ".sha256")
	if err != nil {
		return false
	}
	got, err := sum.Sum(bin)
	return err == nil && strings.TrimSpace(string(want)) == got
}

// SumCache remembers file hashes by path, size and modification time.
type SumCache struct {
	mu sync.Mutex
	m  map[string]cachedSum
}

type cachedSum struct {
	size int64
	mod  time.Time
	sum  string
}

// Sum returns the SHA-256 of path (hex).
func (c *SumCache) Sum(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if c != nil {
		c.mu.Lock()
		e, ok := c.m[path]
		c.mu.Unlock()
		if ok && e.size == fi.Size() && e.mod.Equal(fi.ModTime()) {
			return e.sum, nil
		}
	}
	s, err := executor.FileSHA256(path)
	if err != nil || c == nil {
		return s, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]cachedSum{}
	}
	c.m[path] = cachedSum{fi.Size(), fi.ModTime(), s}
	c.mu.Unlock()
	return s, nil
}

// LogTail returns the last n lines of agent.log.
func (d *Device) LogTail(n int) string { return TailFile(d.LogPath, n) }

// TailFile returns the last n lines of the file at path ("" when it cannot
// be read), for failure messages.
func TailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
