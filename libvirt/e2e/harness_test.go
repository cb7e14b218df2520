//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/flotilla-fleet/flotilla/libvirt/image"
	"github.com/flotilla-fleet/flotilla/libvirt/runner"
)

// repoRoot is the directory holding go.mod.
func repoRoot() string {
	dir, err := os.Getwd()
	Expect(err).NotTo(HaveOccurred())
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		Expect(parent).NotTo(Equal(dir), "go.mod not found above the test's directory")
		dir = parent
	}
}

// env is what every spec shares: one nats-server, one runner, one base.
type env struct {
	root     string
	outDir   string
	base     image.Base
	r        *runner.Runner
	ns       *server.Server
	natsAddr string
	nc       *nats.Conn
	binDir   string
}

var E *env

func setupEnv(ctx context.Context) *env {
	e := &env{root: repoRoot()}
	run := time.Now().UTC().Format("20060102-150405") + fmt.Sprintf("-%d", os.Getpid())
	e.outDir = os.Getenv("FLOTILLA_E2E_OUT")
	if e.outDir == "" {
		e.outDir = filepath.Join(e.root, "_out", "e2e", run)
	}
	Expect(os.MkdirAll(e.outDir, 0o755)).To(Succeed())
	e.binDir = filepath.Join(e.outDir, "bin")
	Expect(os.MkdirAll(e.binDir, 0o755)).To(Succeed())
	GinkgoWriter.Printf("e2e output (console logs, domain XML, binaries): %s\n", e.outDir)

	t0 := time.Now()
	base, err := image.EnsureBase(ctx, filepath.Join(e.root, "hack", "libvirt-image.sh"))
	Expect(err).NotTo(HaveOccurred())
	e.base = base
	GinkgoWriter.Printf("base %s ready in %v\n", base.Hash, time.Since(t0).Round(time.Millisecond))

	logf, err := os.Create(filepath.Join(e.outDir, "harness.log"))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(logf.Close)
	log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug}))

	e.r, err = runner.New(ctx, runner.Options{OutDir: e.outDir, Log: log})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(e.r.Cleanup()).To(Succeed()) })
	swept, err := e.r.Sweep(ctx)
	Expect(err).NotTo(HaveOccurred())
	if len(swept) > 0 {
		GinkgoWriter.Printf("swept stale domains of earlier runs: %v\n", swept)
	}

	e.ns, err = server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(e.outDir, "jetstream"), NoSigs: true, NoLog: true})
	Expect(err).NotTo(HaveOccurred())
	go e.ns.Start()
	Expect(e.ns.ReadyForConnections(10*time.Second)).To(BeTrue(), "nats-server not ready")
	DeferCleanup(e.ns.Shutdown)
	e.natsAddr = e.ns.Addr().(*net.TCPAddr).String()
	e.nc, err = nats.Connect("nats://" + e.natsAddr)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(e.nc.Close)
	return e
}

// goBuild builds a static binary of pkg into the run's bin dir.
func (e *env) goBuild(ctx context.Context, name, pkg string, ldflags ...string) string {
	out := filepath.Join(e.binDir, name)
	args := []string{"build", "-trimpath", "-o", out}
	if len(ldflags) > 0 {
		args = append(args, "-ldflags", strings.Join(ldflags, " "))
	}
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	b, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build %s: %s", pkg, b)
	return out
}

// boot defines and starts a VM on disk with its bridges to the nats-server.
func (e *env) boot(ctx context.Context, name, disk string, config map[string][]byte) *runner.VM {
	vm, err := e.r.Define(ctx, runner.Spec{Name: name, Kernel: e.base.Kernel, Initrd: e.base.Initrd,
		Disk: disk, Config: config})
	Expect(err).NotTo(HaveOccurred())
	vm.StartBridges(e.natsAddr)
	Expect(vm.Start(ctx)).To(Succeed())
	DeferCleanup(func(ctx SpecContext) {
		if CurrentSpecReport().Failed() {
			GinkgoWriter.Printf("---- %s console (last 4 KiB; whole log %s) ----\n%s\n", vm.Name, vm.ConsoleLog, vm.ConsoleTail(4096))
		}
		Expect(vm.Undefine(ctx)).To(Succeed())
	})
	return vm
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
