// Command flotilla-agent is the Flotilla device agent: it applies the desired
// state the operator writes to NATS, heartbeats, answers commands and
// upgrades itself with automatic rollback. See docs/agent.md.
//
//	flotilla-agent --config /etc/flotilla/agent.yaml
//	flotilla-agent version
//	flotilla-agent --self-test --config /etc/flotilla/agent.yaml
//
// Exit status: 0 normal end (or after an upgrade is committed), 1 runtime
// error, 2 bad usage or configuration, 3 journal write failure, 4 re-exec
// failure; --self-test exits 0 when every check passes and 1 otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/agent/config"
	"github.com/flotilla-fleet/flotilla/agent/executor"
	"github.com/flotilla-fleet/flotilla/agent/journal"
	"github.com/flotilla-fleet/flotilla/agent/runtime"
	"github.com/flotilla-fleet/flotilla/agent/shell"
	"github.com/flotilla-fleet/flotilla/core"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "v0.0.0-dev"

// testFault makes a test build misbehave on purpose; the integration suite
// builds agents with -ldflags "-X main.testFault=<fault>". It is empty (and
// inert) in every normal build. Faults:
//
//	self-test-fails       --self-test always fails
//	crash-after-cutover   a candidate process exits with status 70 as soon
//	                      as it starts (before its first heartbeat)
//	slow-self-test        --self-test takes 3 s (gives tests a window in
//	                      which an upgrade is mid-flight)
var testFault = ""

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) > 0 && (args[0] == "version" || args[0] == "--version") {
		fmt.Println(version)
		return 0
	}
	self, err := parseVersion()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-agent:", err)
		return 2
	}
	fs := flag.NewFlagSet("flotilla-agent", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (YAML or JSON); env FLOTILLA_CONFIG")
	selfTest := fs.Bool("self-test", false, "check configuration, data dir, journal and binary, then exit 0 (ok) or 1")
	candidate := fs.Uint("candidate-attempt", 0, "set by the old agent when it starts this binary as an upgrade candidate")
	cfg := config.Default()
	applyFlags := cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "flotilla-agent: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *cfgPath == "" {
		*cfgPath = os.Getenv("FLOTILLA_CONFIG")
	}
	loadErr := loadConfig(&cfg, *cfgPath, applyFlags)
	if *selfTest {
		return runSelfTest(cfg, loadErr)
	}
	if loadErr != nil {
		fmt.Fprintln(os.Stderr, "flotilla-agent:", loadErr)
		return 2
	}
	if *candidate > 0 && testFault == "crash-after-cutover" {
		fmt.Fprintln(os.Stderr, "flotilla-agent: test fault crash-after-cutover: exiting 70")
		return 70
	}

	ring := runtime.NewRing(2000)
	logger := newLogger(cfg.LogLevel, io.MultiWriter(os.Stderr, ring)).With("device", cfg.Device, "pid", os.Getpid())
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := agent(ctx, cfg, self, uint32(*candidate), ring, logger, executor.StripCandidateFlag(args))
	if err != nil {
		logger.Error("agent failed", "err", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func parseVersion() (core.Version, error) {
	v, err := core.ParseVersion(version)
	if err != nil {
		return core.Version{}, fmt.Errorf("this binary was built with a bad version: %w", err)
	}
	return v, nil
}

func loadConfig(cfg *config.Config, path string, applyFlags func() error) error {
	if path != "" {
		if err := cfg.LoadFile(path); err != nil {
			return err
		}
	}
	if err := cfg.LoadEnv(os.Getenv); err != nil {
		return err
	}
	if err := applyFlags(); err != nil {
		return err
	}
	return cfg.Validate()
}

func newLogger(lvl string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(lvl))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func agent(ctx context.Context, cfg config.Config, self core.Version, candidate uint32, ring *runtime.Ring,
	log *slog.Logger, args []string) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 1, fmt.Errorf("find own binary: %w", err)
	}
	pub, _ := cfg.PublicKeyBytes()
	lay := executor.Layout{Dir: cfg.DataDir}
	if err := lay.Init(); err != nil {
		return 1, err
	}
	var launcher executor.Launcher
	switch cfg.Executor {
	case config.ExecutorSystemd:
		var env []string
		for _, kv := range os.Environ() {
			if strings.HasPrefix(kv, config.EnvPrefix) {
				env = append(env, kv)
			}
		}
		launcher = &executor.SystemdLauncher{Log: log, Env: env}
	default:
		launcher = &executor.ProcessLauncher{RunDir: lay.RunDir(), Log: log}
	}
	dialer, err := vportDialer(cfg)
	if err != nil {
		return 2, err
	}
	ex := &executor.Executor{Layout: lay, PublicKey: pub, Launcher: launcher, Args: args, Log: log,
		Source: executor.MultiSource{HTTP: executor.HTTPSource{}}}

	var sh *shell.Shell
	onStatus := func(st runtime.Status) {
		if sh != nil {
			sh.Push(agentcore.WorkloadStatus{Deployment: st.Deployment, Generation: st.Generation, Phase: st.Phase, Err: st.Err})
		}
	}
	// The object store source is filled in by the shell once connected;
	// workloads share the executor's source through this indirection.
	src := &lateSource{ex: ex}
	proc := runtime.NewProcess(&runtime.Process{Dir: lay.WorkloadsDir(), Source: src, PublicKey: pub,
		Grace: cfg.WorkloadGrace, OnStatus: onStatus, Log: log})
	rts := []runtime.Runtime{proc}
	if bin := runtime.PodmanAvailable(); bin != "" {
		rts = append(rts, &runtime.Podman{Bin: bin, Grace: cfg.WorkloadGrace, OnStatus: onStatus, Log: log})
	}
	mgr := runtime.NewManager(cfg.Runtime, onStatus, log, rts...)

	acfg := agentcore.Config{
		Device: cfg.Device, Labels: cfg.Labels, Version: self,
		HeartbeatInterval: cfg.HeartbeatInterval, KeepVersions: cfg.KeepVersions,
		ExecAllowed: cfg.ExecAllowed, Inventory: inventory(), Runtimes: mgr.Kinds(), DefaultRuntime: cfg.Runtime,
	}
	sh = shell.New(shell.Options{
		Device: cfg.Device, Version: self, CandidateAttempt: candidate, ExecAllowed: cfg.ExecAllowed,
		Core: agentcore.New(acfg),
		NATS: shell.NATSOptions{URL: cfg.NATSURL, Creds: cfg.NATSCreds, CA: cfg.NATSCA, Cert: cfg.NATSCert,
			Key: cfg.NATSKey, Dialer: dialer},
		Journal: journal.New(lay.Journal()), Executor: ex, Workload: mgr, Detach: proc.Detach,
		AgentLog: ring, Log: log, BootID: shell.BootID(), Self: exe,
	})
	return sh.Run(ctx)
}

// lateSource reads the executor's Source at call time (the shell completes
// it with the object store once connected).
type lateSource struct{ ex *executor.Executor }

func (l *lateSource) Open(ctx context.Context, ref core.ArtifactRef) (io.ReadCloser, error) {
	return l.ex.Source.Open(ctx, ref)
}

func inventory() core.Inventory {
	inv := core.Inventory{OS: goruntime.GOOS, Arch: goruntime.GOARCH, CPUs: goruntime.NumCPU()}
	inv.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		inv.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				inv.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				inv.MemoryBytes = kb * 1024
			}
		}
	}
	return inv
}

// runSelfTest checks what the agent needs to start, without the network:
// version, configuration, data dir, executor tools, journal, binary.
func runSelfTest(cfg config.Config, loadErr error) int {
	failed := false
	check := func(name string, err error) {
		if err != nil {
			failed = true
			fmt.Printf("FAIL %-10s %v\n", name, err)
			return
		}
		fmt.Printf("ok   %s\n", name)
	}
	check("version", func() error { _, err := parseVersion(); return err }())
	check("config", loadErr)
	if loadErr == nil {
		check("data-dir", dataDirUsable(cfg.DataDir))
		check("executor", func() error {
			if cfg.Executor != config.ExecutorSystemd {
				return nil
			}
			for _, b := range []string{"systemd-run", "systemctl"} {
				if _, err := exec.LookPath(b); err != nil {
					return fmt.Errorf("executor systemd needs %s on PATH (or set executor: process)", b)
				}
			}
			return nil
		}())
		check("journal", func() error {
			_, err := journal.Read(executor.Layout{Dir: cfg.DataDir}.Journal())
			return err
		}())
	}
	check("binary", binaryIntegrity())
	if testFault == "slow-self-test" {
		time.Sleep(3 * time.Second)
	}
	if testFault == "self-test-fails" {
		check("fault", errors.New("test fault self-test-fails (test builds only)"))
	}
	if failed {
		fmt.Println("self-test FAILED")
		return 1
	}
	fmt.Println("self-test passed")
	return 0
}

func dataDirUsable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".self-test-*")
	if err != nil {
		return fmt.Errorf("cannot create files in %s: %w", dir, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write([]byte("ok")); err != nil {
		return err
	}
	return f.Sync()
}

// binaryIntegrity hashes the running binary and compares it with the
// SHA-256 recorded beside it at download (versions/<v>/flotilla-agent.sha256),
// when there is one.
func binaryIntegrity() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	sum, err := executor.FileSHA256(exe)
	if err != nil {
		return fmt.Errorf("read own binary: %w", err)
	}
	want, err := os.ReadFile(exe + ".sha256")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if w := strings.TrimSpace(string(want)); w != sum {
		return fmt.Errorf("%s has SHA-256 %s but %s says %s", filepath.Base(exe), sum, filepath.Base(exe)+".sha256", w)
	}
	return nil
}
