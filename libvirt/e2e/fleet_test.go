//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/libvirt/image"
	"github.com/flotilla-fleet/flotilla/libvirt/runner"
	"github.com/flotilla-fleet/flotilla/operator/natsadapter"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	oprunner "github.com/flotilla-fleet/flotilla/operator/runner"
)

// Agent versions the suites build. Faults are the agent's test-build
// faults (cmd/flotilla-agent: -X main.testFault=...).
var agentBuilds = []struct {
	version string
	fault   string
}{
	{"v1.0.0", ""},
	{"v2.0.0", ""},
	{"v3.0.0", "self-test-fails"},
	{"v4.0.0", "crash-after-cutover"},
	{"v5.0.0", ""},
}

const (
	dataDir      = "/var/lib/flotilla"
	agentUnit    = "flotilla-agent.service"
	rolloutName  = "fleet-agent"
	artifactName = "flotilla-agent"
	// cutoverTimeout is how long an old agent stays armed waiting for the
	// operator's upgrade-stop before it reverts (written into markers).
	cutoverTimeout = 30
)

// fallbackUnit installs the agent the way a device is provisioned, used
// until the agent's own unit file exists under deploy/.
const fallbackUnit = `[Unit]
Description=Flotilla device agent
Documentation=https://github.com/flotilla-fleet/flotilla
RequiresMountsFor=/etc/flotilla /var/lib/flotilla

[Service]
ExecStart=/var/lib/flotilla/current/flotilla-agent --config /etc/flotilla/agent.yaml
Restart=on-failure
RestartSec=2
KillMode=process

[Install]
WantedBy=multi-user.target
`

// fleet is the e2e world: VMs running the real agent, the operator core
// wired to NATS through its runner (no Kubernetes: the in-memory store),
// and the artifacts in the NATS object store.
type fleet struct {
	agents    map[string]string // version → binary
	artifacts map[string]core.ArtifactRef
	disk      string
	unitSrc   string
	vms       map[string]*runner.VM
	names     []string

	js       jetstream.JetStream
	hb       jetstream.KeyValue
	status   jetstream.KeyValue
	info     jetstream.KeyValue
	store    *oprunner.MemStore
	ad       *natsadapter.Adapter
	opMu     sync.Mutex
	opCancel context.CancelFunc
	opDone   chan struct{}
	opLog    *slog.Logger
}

// agentUnitFile returns the agent's systemd unit: the one the agent ships
// (deploy/**/flotilla-agent.service) when it exists, else fallbackUnit.
func agentUnitFile(root string) ([]byte, string) {
	var found string
	filepath.WalkDir(filepath.Join(root, "deploy"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == agentUnit && found == "" {
			found = p
		}
		return nil
	})
	if found != "" {
		if b, err := os.ReadFile(found); err == nil {
			return b, found
		}
	}
	return []byte(fallbackUnit), "fallback unit in libvirt/e2e"
}

func newFleet(ctx context.Context, names ...string) *fleet {
	f := &fleet{agents: map[string]string{}, artifacts: map[string]core.ArtifactRef{},
		vms: map[string]*runner.VM{}, names: names}

	By("building the agent versions")
	t0 := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, b := range agentBuilds {
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			ld := []string{"-s", "-w", "-X main.version=" + b.version}
			if b.fault != "" {
				ld = append(ld, "-X main.testFault="+b.fault)
			}
			bin := E.goBuild(ctx, "flotilla-agent-"+b.version, "./cmd/flotilla-agent", ld...)
			mu.Lock()
			f.agents[b.version] = bin
			mu.Unlock()
		}()
	}
	wg.Wait()
	AddReportEntry("agent builds", time.Since(t0).Round(time.Millisecond))

	By("publishing the artifacts to the object store")
	var err error
	f.js, err = jetstream.New(E.nc)
	Expect(err).NotTo(HaveOccurred())
	obj, err := f.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: core.ObjectStoreArtifacts})
	Expect(err).NotTo(HaveOccurred())
	for v, bin := range f.agents {
		data, err := os.ReadFile(bin)
		Expect(err).NotTo(HaveOccurred())
		name := core.ArtifactObjectName(artifactName, v)
		_, err = obj.PutBytes(ctx, name, data)
		Expect(err).NotTo(HaveOccurred())
		sum, err := fileSHA256(bin)
		Expect(err).NotTo(HaveOccurred())
		f.artifacts[v] = core.ArtifactRef{Object: name, SHA256: sum, Size: int64(len(data))}
	}

	By("starting the operator (opcore + natsadapter + runner, in-memory object store)")
	f.ad, err = natsadapter.New(ctx, E.nc, natsadapter.Options{CreateBuckets: true})
	Expect(err).NotTo(HaveOccurred())
	for bucket, kv := range map[string]*jetstream.KeyValue{core.BucketDeviceHeartbeat: &f.hb,
		core.BucketAgentUpgradeStatus: &f.status, core.BucketDeviceInfo: &f.info} {
		*kv, err = f.js.KeyValue(ctx, bucket)
		Expect(err).NotTo(HaveOccurred())
	}
	f.store = oprunner.NewMemStore()
	logf, err := os.Create(filepath.Join(E.outDir, "operator.log"))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(logf.Close)
	f.opLog = slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.startOperator()
	DeferCleanup(f.stopOperator)

	By("building the root disk: base + agent v1 installed as a systemd service")
	unit, src := agentUnitFile(E.root)
	f.unitSrc = src
	GinkgoWriter.Printf("agent unit: %s\n", src)
	t0 = time.Now()
	v1 := "v1.0.0"
	f.disk, err = image.Build(ctx, E.base, image.Payload{
		Files: []image.File{
			{Path: filepath.Join(dataDir, "versions", v1, "flotilla-agent"), Mode: 0o755, Src: f.agents[v1]},
			{Path: "/etc/systemd/system/" + agentUnit, Data: unit},
		},
		Symlinks: map[string]string{filepath.Join(dataDir, "current"): "versions/" + v1},
		Enable:   []string{agentUnit},
	})
	Expect(err).NotTo(HaveOccurred())
	AddReportEntry("root disk (cached when unchanged)", time.Since(t0).Round(time.Millisecond))
	return f
}

func fileSHA256(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return sha256hex(data), nil
}

// agentConfig is the device's provisioning: /etc/flotilla/agent.yaml.
func agentConfig(name string) []byte {
	return []byte(fmt.Sprintf(`device: %s
labels:
  fleet: e2e
  vm: %s
nats_vport: /dev/virtio-ports/org.flotilla.nats.*
data_dir: %s
heartbeat_interval: 2s
executor: systemd
exec_allowed: true
log_level: debug
`, name, name, dataDir))
}

// bootAll defines and starts every VM at once (they boot in parallel).
func (f *fleet) bootAll(ctx context.Context) {
	for _, n := range f.names {
		f.vms[n] = E.boot(ctx, n, f.disk, map[string][]byte{"agent.yaml": agentConfig(n)})
	}
}

func (f *fleet) startOperator() {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	if f.opCancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := oprunner.New(oprunner.Options{NATS: E.nc, Store: f.store, Logger: f.opLog,
		Core: opcore.Config{CreateDevices: true, CutoverTimeoutSec: cutoverTimeout,
			AttemptTimeout: 10 * time.Minute, OfflineAfter: 30 * time.Second, LastSeenResolution: 5 * time.Second}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			f.opLog.Error("operator runner ended", "err", err)
		}
	}()
	f.opCancel, f.opDone = cancel, done
}

func (f *fleet) stopOperator() {
	f.opMu.Lock()
	cancel, done := f.opCancel, f.opDone
	f.opCancel = nil
	f.opMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// rollout creates or updates the AgentRollout to version, over the devices
// matching labels.
func (f *fleet) rollout(version string, labels map[string]string) {
	f.store.PutAgentRollout(opcore.AgentRolloutSpec{
		Name:     rolloutName,
		Version:  core.MustParseVersion(version),
		Artifact: f.artifacts[version],
		Selector: core.LabelSelector{MatchLabels: labels},
	})
}

// heartbeat is the device's latest heartbeat.
func (f *fleet) heartbeat(ctx context.Context, dev string) (core.Heartbeat, error) {
	e, err := f.hb.Get(ctx, core.HeartbeatKey(dev))
	if err != nil {
		return core.Heartbeat{}, err
	}
	return core.DecodeHeartbeat(e.Value())
}

// upgradeStatus is the device's agent-upgrade-status.
func (f *fleet) upgradeStatus(ctx context.Context, dev string) (core.UpgradeStatus, error) {
	e, err := f.status.Get(ctx, core.AgentUpgradeStatusKey(dev))
	if err != nil {
		return core.UpgradeStatus{}, err
	}
	return core.DecodeUpgradeStatus(e.Value())
}

// heartbeatVersion polls for Eventually.
func (f *fleet) heartbeatVersion(ctx context.Context, dev string) func() string {
	return func() string {
		h, err := f.heartbeat(ctx, dev)
		if err != nil {
			return "(no heartbeat: " + err.Error() + ")"
		}
		return h.AgentVersion.String()
	}
}

// device is the operator's Device object status.
func (f *fleet) device(dev string) opcore.DeviceStatus {
	d, ok := f.store.Device(dev)
	if !ok {
		return opcore.DeviceStatus{}
	}
	return d.Status
}

// rolloutStatus is the AgentRollout's status.
func (f *fleet) rolloutStatus() opcore.AgentRolloutStatus {
	r, ok := f.store.AgentRollout(rolloutName)
	if !ok {
		return opcore.AgentRolloutStatus{}
	}
	return r.Status
}

// exec runs a shell script on the device through the agent's exec command.
func (f *fleet) exec(ctx context.Context, dev, script string) (string, error) {
	req := core.CommandRequest{Verb: core.VerbExec, Exec: &core.ExecArgs{Command: []string{"/bin/sh", "-c", script}, TimeoutMS: 30000}}
	body, err := req.Encode()
	if err != nil {
		return "", err
	}
	msg, err := E.nc.RequestWithContext(ctx, core.CommandSubject(dev, core.VerbExec), body)
	if err != nil {
		return "", fmt.Errorf("exec on %s: %w", dev, err)
	}
	rep, err := core.DecodeCommandReply(msg.Data)
	if err != nil {
		return "", err
	}
	if err := rep.Err(); err != nil {
		return "", err
	}
	if rep.Exec.ExitCode != 0 {
		return rep.Exec.Stdout, fmt.Errorf("exec on %s: exit %d: %s", dev, rep.Exec.ExitCode, rep.Exec.Stderr)
	}
	return rep.Exec.Stdout, nil
}

// diskState reports, from inside the device, where current points and which
// agent binaries are running.
type diskState struct {
	Current string   // version current points at
	Running []string // versions of running flotilla-agent processes, sorted
}

const diskStateScript = `readlink ` + dataDir + `/current
for p in /proc/[0-9]*; do readlink $p/exe 2>/dev/null; done | grep flotilla-agent || true`

func (f *fleet) diskState(ctx context.Context, dev string) (diskState, error) {
	cctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	out, err := f.exec(cctx, dev, diskStateScript)
	if err != nil {
		return diskState{}, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var st diskState
	st.Current = filepath.Base(strings.TrimSpace(lines[0]))
	for _, l := range lines[1:] {
		l = strings.TrimSuffix(strings.TrimSpace(l), " (deleted)")
		if l == "" {
			continue
		}
		st.Running = append(st.Running, filepath.Base(filepath.Dir(l)))
	}
	sort.Strings(st.Running)
	return st, nil
}

// describe summarises a device for failure messages.
func (f *fleet) describe(ctx context.Context, dev string) string {
	var b bytes.Buffer
	h, herr := f.heartbeat(ctx, dev)
	s, serr := f.upgradeStatus(ctx, dev)
	fmt.Fprintf(&b, "%s: heartbeat %+v (%v); upgrade-status %v (%v); Device status %+v",
		dev, h, herr, s, serr, f.device(dev))
	return b.String()
}
