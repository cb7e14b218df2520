package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// Podman runs each workload as a container named flotilla-<deployment>
// (podman run -d --replace), watched by polling podman inspect. Podman's own
// restart policy (--restart=on-failure) restarts crashed containers. A
// container already running the same spec (label flotilla.spec) is kept, so
// agent upgrades do not restart containers.
type Podman struct {
	Bin      string // path of podman
	Grace    time.Duration
	Poll     time.Duration // status poll interval; default 5s
	OnStatus func(Status)
	Log      *slog.Logger

	mu    sync.Mutex
	specs map[string]core.WorkloadSpec
	stops map[string]chan struct{}
}

// PodmanAvailable returns podman's path, or "" when it is not installed.
func PodmanAvailable() string {
	p, err := exec.LookPath("podman")
	if err != nil {
		return ""
	}
	return p
}

// Kind implements Runtime.
func (p *Podman) Kind() core.Runtime { return core.RuntimePodman }

func containerName(dep string) string { return "flotilla-" + dep }

func (p *Podman) run(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, p.Bin, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %v: %s", args[0], err, core.Truncate(strings.TrimSpace(string(out)), 512))
	}
	return string(out), nil
}

// Running implements Runtime: the deployments this process started or
// took over.
func (p *Podman) Running() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for d := range p.specs {
		out = append(out, d)
	}
	return out
}

// specHash labels a container with the spec it runs, so that a new agent
// process finds a running container for an identical spec and keeps it
// instead of replacing it.
func specHash(spec core.WorkloadSpec) string {
	spec.Generation = 0
	b, _ := spec.Encode()
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Start implements Runtime.
func (p *Podman) Start(ctx context.Context, spec core.WorkloadSpec) error {
	if spec.Image == "" {
		return fmt.Errorf("podman runtime: spec has no image")
	}
	p.mu.Lock()
	if p.specs == nil {
		p.specs, p.stops = map[string]core.WorkloadSpec{}, map[string]chan struct{}{}
	}
	prev, had := p.specs[spec.Deployment]
	p.mu.Unlock()
	if had && sameWorkload(prev, spec) {
		p.status(spec, core.PhaseRunning, "")
		return nil
	}
	hash := specHash(spec)
	running, _ := p.run(ctx, "inspect", "-f", `{{index .Config.Labels "flotilla.spec"}} {{.State.Status}}`, containerName(spec.Deployment))
	adopt := !had && strings.TrimSpace(running) == hash+" running"
	args := []string{"run", "-d", "--replace", "--name", containerName(spec.Deployment),
		"--label", "flotilla.deployment=" + spec.Deployment, "--label", "flotilla.version=" + spec.Version,
		"--label", "flotilla.spec=" + hash, "--restart=on-failure"}
	for _, k := range core.SortedKeys(spec.Env) {
		args = append(args, "-e", k+"="+spec.Env[k])
	}
	args = append(append(args, spec.Image), spec.Args...)
	if !adopt {
		if _, err := p.run(ctx, args...); err != nil {
			return err
		}
	}
	stop := make(chan struct{})
	p.mu.Lock()
	if old := p.stops[spec.Deployment]; old != nil {
		close(old)
	}
	p.specs[spec.Deployment], p.stops[spec.Deployment] = spec, stop
	p.mu.Unlock()
	p.status(spec, core.PhaseRunning, "")
	go p.watch(spec, stop)
	return nil
}

func (p *Podman) watch(spec core.WorkloadSpec, stop chan struct{}) {
	poll := p.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	last := "running"
	for {
		select {
		case <-stop:
			return
		case <-time.After(poll):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := p.run(ctx, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", containerName(spec.Deployment))
		cancel()
		state := strings.TrimSpace(out)
		if err != nil {
			state = "missing"
		}
		running := strings.HasPrefix(state, "running")
		if running && last != "running" {
			p.status(spec, core.PhaseRunning, "")
		} else if !running && state != last {
			p.status(spec, core.PhaseFailed, "container "+state)
		}
		if running {
			last = "running"
		} else {
			last = state
		}
	}
}

// Stop implements Runtime.
func (p *Podman) Stop(ctx context.Context, dep string) error {
	p.mu.Lock()
	if s := p.stops[dep]; s != nil {
		close(s)
	}
	delete(p.stops, dep)
	delete(p.specs, dep)
	p.mu.Unlock()
	grace := strconv.Itoa(int(p.Grace / time.Second))
	_, _ = p.run(ctx, "stop", "-t", grace, containerName(dep))
	_, err := p.run(ctx, "rm", "-f", "--ignore", containerName(dep))
	return err
}

// Logs implements Runtime.
func (p *Podman) Logs(ctx context.Context, dep string, n int) ([]string, bool, error) {
	out, err := p.run(ctx, "logs", "--tail", strconv.Itoa(n+1), containerName(dep))
	if err != nil {
		return nil, false, err
	}
	lines, trunc := LastLines(out, n)
	return lines, trunc, nil
}

func (p *Podman) status(spec core.WorkloadSpec, phase core.WorkloadPhase, err string) {
	if p.OnStatus != nil {
		p.OnStatus(Status{Deployment: spec.Deployment, Generation: spec.Generation, Phase: phase, Err: err})
	}
}
