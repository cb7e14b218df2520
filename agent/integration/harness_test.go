//go:build integration

package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/agent/executor"
	"github.com/flotilla-fleet/flotilla/agent/journal"
	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/internal/agenttest"
)

// build is one agent binary built for the suite.
type build struct {
	Version core.Version
	Fault   string
	Path    string
	Ref     core.ArtifactRef
}

// buildAgent compiles cmd/flotilla-agent at version with an optional test
// fault (see cmd/flotilla-agent: testFault).
func buildAgent(dir, version, fault string) build {
	GinkgoHelper()
	out := filepath.Join(dir, "flotilla-agent-"+version)
	ldflags := "-s -w -X main.version=" + version
	if fault != "" {
		ldflags += " -X main.testFault=" + fault
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "github.com/flotilla-fleet/flotilla/cmd/flotilla-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	b, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build %s: %s", version, b)
	data, err := os.ReadFile(out)
	Expect(err).NotTo(HaveOccurred())
	sum := sha256.Sum256(data)
	return build{Version: core.MustParseVersion(version), Fault: fault, Path: out,
		Ref: core.ArtifactRef{Object: core.ArtifactObjectName("flotilla-agent", version), SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}}
}

// natsServer is an embedded JetStream server that can be restarted on the
// same port and store directory.
type natsServer struct {
	opts *server.Options
	srv  *server.Server
}

func startNATS(storeDir string) *natsServer {
	GinkgoHelper()
	n := &natsServer{opts: &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: storeDir,
		NoLog: true, NoSigs: true}}
	n.start()
	n.opts.Port = n.srv.Addr().(*net.TCPAddr).Port // restarts reuse the port
	return n
}

func (n *natsServer) start() {
	GinkgoHelper()
	srv, err := server.NewServer(n.opts)
	Expect(err).NotTo(HaveOccurred())
	srv.Start()
	Expect(srv.ReadyForConnections(10*time.Second)).To(BeTrue(), "nats-server not ready")
	n.srv = srv
}

func (n *natsServer) URL() string { return n.srv.ClientURL() }

// restart shuts the server down and starts it again on the same port with
// the same store: clients see a disconnect and a reconnect.
func (n *natsServer) restart(down time.Duration) {
	GinkgoHelper()
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	time.Sleep(down)
	n.start()
}

// device is one agent installation: its own data dir and config.
type device struct {
	Name    string
	Labels  map[string]string
	Dir     string
	DataDir string
	Config  string
	LogPath string

	mu    sync.Mutex
	procs []*exec.Cmd // agents this test started
}

func newDevice(root, name string, labels map[string]string, natsURL string, execAllowed bool) *device {
	GinkgoHelper()
	d := &device{Name: name, Labels: labels, Dir: filepath.Join(root, name)}
	d.DataDir = filepath.Join(d.Dir, "data")
	d.Config = filepath.Join(d.Dir, "agent.yaml")
	d.LogPath = filepath.Join(d.Dir, "agent.log")
	Expect(os.MkdirAll(d.DataDir, 0o755)).To(Succeed())
	var lbl []string
	for k, v := range labels {
		lbl = append(lbl, fmt.Sprintf("%s: %s", k, v))
	}
	cfg := fmt.Sprintf(`device: %s
labels: {%s}
nats_url: %s
data_dir: %s
heartbeat_interval: 500ms
executor: process
runtime: process
exec_allowed: %v
workload_grace: 2s
`, name, strings.Join(lbl, ", "), natsURL, d.DataDir, execAllowed)
	Expect(os.WriteFile(d.Config, []byte(cfg), 0o644)).To(Succeed())
	DeferCleanup(d.stopAll)
	return d
}

// start runs bin as this device's agent, output appended to agent.log.
func (d *device) start(bin string) *exec.Cmd {
	GinkgoHelper()
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	Expect(err).NotTo(HaveOccurred())
	defer logf.Close()
	cmd := exec.Command(bin, "--config", d.Config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	Expect(cmd.Start()).To(Succeed())
	go cmd.Wait() // reap; exit status is read from ProcessState by tests that care
	d.mu.Lock()
	d.procs = append(d.procs, cmd)
	d.mu.Unlock()
	return cmd
}

// installAndStart puts bin where an installer would and starts it: a fresh
// install with no versions/ or current yet.
func (d *device) installAndStart(b build) *exec.Cmd {
	GinkgoHelper()
	dst := filepath.Join(d.Dir, "install", "flotilla-agent")
	Expect(os.MkdirAll(filepath.Dir(dst), 0o755)).To(Succeed())
	data, err := os.ReadFile(b.Path)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(dst, data, 0o755)).To(Succeed())
	return d.start(dst)
}

// activePID is the device's active agent, from run/agent.pid.
func (d *device) activePID() int {
	b, err := os.ReadFile(filepath.Join(d.DataDir, "run", "agent.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid > 0 && !d.ours(pid) {
		return 0
	}
	return pid
}

// ours reports whether pid is alive and is an agent or workload of this
// device (its command line or cwd names the device's directory).
func (d *device) ours(pid int) bool { return agenttest.OwnedBy(pid, d.Dir) }

// pids lists every live process of this device: agents the test started,
// agents started as candidates (run/*.pid) and workloads (state.json).
func (d *device) pids() []int {
	seen := map[int]bool{}
	var out []int
	add := func(pid int) {
		if !seen[pid] && d.ours(pid) {
			seen[pid] = true
			out = append(out, pid)
		}
	}
	d.mu.Lock()
	for _, c := range d.procs {
		if c.Process != nil {
			add(c.Process.Pid)
		}
	}
	d.mu.Unlock()
	files, _ := filepath.Glob(filepath.Join(d.DataDir, "run", "*.pid"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		add(pid)
	}
	states, _ := filepath.Glob(filepath.Join(d.DataDir, "workloads", "*", "state.json"))
	for _, f := range states {
		b, _ := os.ReadFile(f)
		if i := strings.Index(string(b), `"pid":`); i >= 0 {
			rest := string(b)[i+6:]
			j := strings.IndexAny(rest, ",}")
			pid, _ := strconv.Atoi(rest[:j])
			add(pid)
		}
	}
	return out
}

// stopAll ends every process of this device, by PID: SIGTERM, then SIGKILL.
func (d *device) stopAll() {
	for round := 0; round < 3; round++ {
		pids := d.pids()
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// current returns where current points and checks the binary there against
// its recorded SHA-256.
func (d *device) current() (core.Version, error) {
	lay := executor.Layout{Dir: d.DataDir}
	v, err := lay.CurrentVersion()
	if err != nil || v.IsZero() {
		return v, fmt.Errorf("current: %v %v", v, err)
	}
	bin, _ := lay.Binary(v)
	sum, err := executor.FileSHA256(bin)
	if err != nil {
		return v, err
	}
	want, err := os.ReadFile(bin + ".sha256")
	if err != nil {
		return v, err
	}
	if strings.TrimSpace(string(want)) != sum {
		return v, fmt.Errorf("current binary %s does not match its recorded SHA-256", bin)
	}
	return v, nil
}

// journalConsistent checks the journal reads without corruption and every
// attempt in it ended (committed, reverted or failed).
func (d *device) journalConsistent() error {
	recs, err := journal.Read(filepath.Join(d.DataDir, "journal"))
	if err != nil {
		return err
	}
	open := map[uint32]string{}
	for _, r := range recs {
		if r.Attempt == 0 {
			continue
		}
		switch r.Kind {
		case "committed", "reverted", "failed":
			delete(open, r.Attempt)
		default:
			open[r.Attempt] = string(r.Kind)
		}
	}
	if len(open) > 0 {
		return fmt.Errorf("attempts without an end in the journal: %v", open)
	}
	return nil
}

// logTail returns the last n lines of agent.log, for failure messages.
func (d *device) logTail(n int) string { return agenttest.TailFile(d.LogPath, n) }

// rssKiB reads VmRSS of pid.
func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// kvGet reads one key's value (nil when missing).
func kvGet(ctx context.Context, js jetstream.JetStream, bucket, key string) []byte {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return nil
	}
	return e.Value()
}

func heartbeatOf(ctx context.Context, js jetstream.JetStream, dev string) core.Heartbeat {
	b := kvGet(ctx, js, core.BucketDeviceHeartbeat, core.HeartbeatKey(dev))
	if b == nil {
		return core.Heartbeat{}
	}
	h, _ := core.DecodeHeartbeat(b)
	return h
}

func statusOf(ctx context.Context, js jetstream.JetStream, dev string) core.UpgradeStatus {
	b := kvGet(ctx, js, core.BucketAgentUpgradeStatus, core.AgentUpgradeStatusKey(dev))
	if b == nil {
		return core.UpgradeStatus{}
	}
	s, _ := core.DecodeUpgradeStatus(b)
	return s
}

// uploadArtifact puts a file into the artifacts object store.
func uploadArtifact(ctx context.Context, js jetstream.JetStream, name, path string) {
	GinkgoHelper()
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: core.ObjectStoreArtifacts})
	Expect(err).NotTo(HaveOccurred())
	f, err := os.Open(path)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	_, err = obs.Put(ctx, jetstream.ObjectMeta{Name: name}, f)
	Expect(err).NotTo(HaveOccurred())
}

func fileSum(path string) (string, error) { return executor.FileSHA256(path) }
