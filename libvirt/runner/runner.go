// Package runner boots and controls the e2e VMs through libvirtd, over
// github.com/digitalocean/go-libvirt on the local socket.
//
// Every domain a Runner defines is named <Prefix><run>-<vm>, where run
// identifies this process (r<pid>); Cleanup destroys and undefines all of
// them, and Sweep removes domains left behind by earlier runs whose process
// is gone (an interrupted test). A VM's files — its qcow2 overlay, config
// disk and console.log — live in OutDir/<vm>/ and are kept after Cleanup,
// so a failed run can be read afterwards.
package runner

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/flotilla-fleet/flotilla/agent/transport/vport"
	"github.com/flotilla-fleet/flotilla/libvirt/image"
)

// DefaultSocket is libvirtd's system socket.
const DefaultSocket = "/var/run/libvirt/libvirt-sock"

// DefaultPrefix starts the name of every domain the e2e suites create.
const DefaultPrefix = "flotilla-e2e-"

// NATSPorts is how many virtio-serial NATS ports a VM gets: the old agent,
// its candidate and the candidate's self-test can be connected at once.
const NATSPorts = 4

// PortName is the guest name of NATS port i (/dev/virtio-ports/<name>).
func PortName(i int) string { return fmt.Sprintf("org.flotilla.nats.%d", i) }

// Options configure a Runner.
type Options struct {
	Socket string // default DefaultSocket
	Prefix string // default DefaultPrefix
	// OutDir holds one directory per VM (overlay, config disk,
	// console.log). Required.
	OutDir string
	// SocketDir holds the channels' unix sockets; paths must stay under
	// 108 bytes, so it is short. Default /run/flotilla/e2e/<run>.
	SocketDir string
	Log       *slog.Logger
}

// Runner defines and controls VMs.
type Runner struct {
	l      *libvirt.Libvirt
	opts   Options
	run    string
	log    *slog.Logger
	mu     sync.Mutex
	vms    []*VM
	closed bool
}

// New connects to libvirtd.
func New(ctx context.Context, opts Options) (*Runner, error) {
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.OutDir == "" {
		return nil, errors.New("runner: OutDir is required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	run := "r" + strconv.Itoa(os.Getpid())
	if opts.SocketDir == "" {
		opts.SocketDir = filepath.Join("/run/flotilla/e2e", run)
	}
	for _, d := range []string{opts.OutDir, opts.SocketDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
	}
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(opts.Socket), dialers.WithLocalTimeout(5*time.Second)))
	if err := l.Connect(); err != nil {
		return nil, fmt.Errorf("runner: connect to libvirtd at %s (run hack/libvirt-setup.sh): %w", opts.Socket, err)
	}
	return &Runner{l: l, opts: opts, run: run, log: opts.Log}, nil
}

// Run is this runner's run id (part of every domain name).
func (r *Runner) Run() string { return r.run }

// Libvirt exposes the connection for calls the runner does not wrap.
func (r *Runner) Libvirt() *libvirt.Libvirt { return r.l }

// Sweep destroys and undefines domains with the runner's prefix whose
// creating process is no longer alive: leftovers of an interrupted run.
// It returns their names.
func (r *Runner) Sweep(ctx context.Context) ([]string, error) {
	doms, _, err := r.l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, fmt.Errorf("runner: list domains: %w", err)
	}
	var swept []string
	for _, d := range doms {
		if !strings.HasPrefix(d.Name, r.opts.Prefix) {
			continue
		}
		rest := strings.TrimPrefix(d.Name, r.opts.Prefix)
		runID, _, _ := strings.Cut(rest, "-")
		if pid, err := strconv.Atoi(strings.TrimPrefix(runID, "r")); err == nil && pid != os.Getpid() && alive(pid) {
			continue // another live run's VM
		}
		if runID == r.run {
			continue
		}
		if err := removeDomain(r.l, d); err != nil {
			return swept, fmt.Errorf("runner: sweep %s: %w", d.Name, err)
		}
		swept = append(swept, d.Name)
	}
	return swept, nil
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// removeDomain destroys (if running) and undefines d.
func removeDomain(l *libvirt.Libvirt, d libvirt.Domain) error {
	state, _, err := l.DomainGetState(d, 0)
	if err == nil && libvirt.DomainState(state) != libvirt.DomainShutoff {
		if err := l.DomainDestroy(d); err != nil && !isNoDomain(err) {
			return fmt.Errorf("destroy: %w", err)
		}
	}
	if err := l.DomainUndefineFlags(d, libvirt.DomainUndefineNvram); err != nil && !isNoDomain(err) {
		return fmt.Errorf("undefine: %w", err)
	}
	return nil
}

func isNoDomain(err error) bool {
	return libvirt.IsNotFound(err) || strings.Contains(err.Error(), "not running")
}

// Cleanup stops the bridges and destroys and undefines every domain this
// runner defined, then disconnects. Files stay in OutDir. Safe to call
// more than once.
func (r *Runner) Cleanup() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	vms := r.vms
	r.mu.Unlock()
	var errs []error
	for _, vm := range vms {
		vm.stopBridges()
		if err := removeDomain(r.l, vm.dom); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", vm.Domain, err))
		}
	}
	os.RemoveAll(r.opts.SocketDir)
	if err := r.l.Disconnect(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Spec describes one VM.
type Spec struct {
	Name   string // short name, e.g. "vm-a"; part of the domain name
	Kernel string
	Initrd string
	// Disk is the raw root disk; the VM writes to a qcow2 overlay on it.
	Disk string
	// Config files go on a small disk the guest mounts read-only at
	// /etc/flotilla (the device's provisioning data).
	Config    map[string][]byte
	MemoryMiB int    // default 512
	Cmdline   string // appended to the default kernel command line
}

// VM is one defined domain.
type VM struct {
	Name       string
	Domain     string
	Dir        string
	ConsoleLog string
	// Sockets are the host ends of the NATS ports, in port order.
	Sockets []string

	r   *Runner
	dom libvirt.Domain

	bmu     sync.Mutex
	bcancel context.CancelFunc
	bdone   chan struct{}
	bridges []*vport.Bridge
}

const baseCmdline = "console=ttyS0 root=/dev/vda ro panic=-1 mitigations=off random.trust_cpu=on " +
	"loglevel=4 systemd.show_status=auto i8042.noaux i8042.nokbd no_timer_check"

// Define creates the VM's overlay and config disk and defines the domain
// (not started).
func (r *Runner) Define(ctx context.Context, s Spec) (*VM, error) {
	if s.Name == "" || strings.ContainsAny(s.Name, "/ ") {
		return nil, fmt.Errorf("runner: bad VM name %q", s.Name)
	}
	if s.MemoryMiB == 0 {
		s.MemoryMiB = 512
	}
	vm := &VM{Name: s.Name, Domain: r.opts.Prefix + r.run + "-" + s.Name, r: r}
	vm.Dir = filepath.Join(r.opts.OutDir, s.Name)
	if err := os.MkdirAll(vm.Dir, 0o755); err != nil {
		return nil, err
	}
	vm.ConsoleLog = filepath.Join(vm.Dir, "console.log")
	overlay := filepath.Join(vm.Dir, "root.qcow2")
	os.Remove(overlay)
	if err := image.Overlay(ctx, s.Disk, overlay); err != nil {
		return nil, fmt.Errorf("runner: %s: %w", s.Name, err)
	}
	// Always attach a config disk (maybe empty): the guest's fstab mounts
	// /dev/vdb, and a missing device costs a boot-time timeout.
	cfgDisk := filepath.Join(vm.Dir, "config.img")
	if err := image.ConfigDisk(ctx, cfgDisk, s.Config); err != nil {
		return nil, fmt.Errorf("runner: %s: config disk: %w", s.Name, err)
	}
	sockDir := filepath.Join(r.opts.SocketDir, s.Name)
	if err := os.MkdirAll(sockDir, 0o755); err != nil {
		return nil, err
	}
	for i := range NATSPorts {
		vm.Sockets = append(vm.Sockets, filepath.Join(sockDir, fmt.Sprintf("n%d.sock", i)))
	}
	x := domainXML(vm.Domain, s, overlay, cfgDisk, vm.ConsoleLog, vm.Sockets)
	if err := os.WriteFile(filepath.Join(vm.Dir, "domain.xml"), []byte(x), 0o644); err != nil {
		return nil, err
	}
	dom, err := r.l.DomainDefineXML(x)
	if err != nil {
		return nil, fmt.Errorf("runner: define %s: %w", vm.Domain, err)
	}
	vm.dom = dom
	r.mu.Lock()
	r.vms = append(r.vms, vm)
	r.mu.Unlock()
	return vm, nil
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func domainXML(name string, s Spec, overlay, cfgDisk, console string, sockets []string) string {
	var b strings.Builder
	cmdline := baseCmdline
	if s.Cmdline != "" {
		cmdline += " " + s.Cmdline
	}
	fmt.Fprintf(&b, `<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>%d</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>%s</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='maximum'/>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='writeback'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
`, esc(name), s.MemoryMiB, esc(s.Kernel), esc(s.Initrd), esc(cmdline), esc(overlay))
	fmt.Fprintf(&b, `    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='%s'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
`, esc(cfgDisk))
	fmt.Fprintf(&b, `    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='%s' append='on'/>
      <target port='0'/>
    </serial>
`, esc(console))
	for i, sock := range sockets {
		fmt.Fprintf(&b, `    <channel type='unix'>
      <source mode='bind' path='%s'/>
      <target type='virtio' name='%s'/>
    </channel>
`, esc(sock), PortName(i))
	}
	b.WriteString(`    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>
`)
	return b.String()
}

// Start boots the VM (DomainCreate).
func (vm *VM) Start(ctx context.Context) error {
	vm.mark("start")
	if err := vm.r.l.DomainCreate(vm.dom); err != nil {
		return fmt.Errorf("start %s: %w", vm.Name, err)
	}
	return nil
}

// Destroy cuts the power (DomainDestroy): no shutdown, unsynced writes lost.
func (vm *VM) Destroy(ctx context.Context) error {
	vm.mark("destroy (power cut)")
	if err := vm.r.l.DomainDestroy(vm.dom); err != nil {
		return fmt.Errorf("destroy %s: %w", vm.Name, err)
	}
	return nil
}

// Reset presses the reset button (DomainReset): the guest restarts with no
// shutdown, unsynced writes lost. With on_reboot=destroy QEMU turns a reset
// into a power-off, so Reset starts the domain again when that happens.
func (vm *VM) Reset(ctx context.Context) error {
	vm.mark("reset")
	if err := vm.r.l.DomainReset(vm.dom, 0); err != nil {
		return fmt.Errorf("reset %s: %w", vm.Name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := vm.WaitState(wctx, libvirt.DomainShutoff); err == nil {
		if err := vm.r.l.DomainCreate(vm.dom); err != nil {
			return fmt.Errorf("reset %s: start after reset: %w", vm.Name, err)
		}
	}
	return nil
}

// Shutdown asks the guest to power off (ACPI) and waits until it is off.
func (vm *VM) Shutdown(ctx context.Context) error {
	vm.mark("shutdown")
	if err := vm.r.l.DomainShutdown(vm.dom); err != nil {
		return fmt.Errorf("shutdown %s: %w", vm.Name, err)
	}
	return vm.WaitState(ctx, libvirt.DomainShutoff)
}

// Reboot is a clean reboot driven from outside: ACPI power-off, wait until
// off, start. (Reboots inside one QEMU process were erratic under TCG; the
// domain's on_reboot is destroy, so a guest-initiated reboot also ends in
// shut off and a test restarts it with Start.)
func (vm *VM) Reboot(ctx context.Context) error {
	if err := vm.Shutdown(ctx); err != nil {
		return err
	}
	return vm.Start(ctx)
}

// Undefine removes the domain definition (destroying it first if running).
func (vm *VM) Undefine(ctx context.Context) error {
	vm.stopBridges()
	return removeDomain(vm.r.l, vm.dom)
}

// State reports the domain's state.
func (vm *VM) State() (libvirt.DomainState, error) {
	st, _, err := vm.r.l.DomainGetState(vm.dom, 0)
	return libvirt.DomainState(st), err
}

// WaitState polls until the domain is in state want or ctx ends.
func (vm *VM) WaitState(ctx context.Context, want libvirt.DomainState) error {
	for {
		st, err := vm.State()
		if err != nil {
			return fmt.Errorf("%s state: %w", vm.Name, err)
		}
		if st == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for state %d (now %d): %w", vm.Name, want, st, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// mark writes a line into the console log so the log reads as a story of
// what the harness did.
func (vm *VM) mark(what string) {
	f, err := os.OpenFile(vm.ConsoleLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "\n===== flotilla e2e %s: %s %s =====\n", time.Now().UTC().Format("15:04:05.000"), vm.Name, what)
}

// StartBridges connects each NATS port's socket to target (host:port of
// the nats-server) until the VM is undefined or the runner cleaned up. The
// bridges follow the VM through destroy and start.
func (vm *VM) StartBridges(target string) []*vport.Bridge {
	vm.bmu.Lock()
	defer vm.bmu.Unlock()
	if vm.bcancel != nil {
		return vm.bridges
	}
	ctx, cancel := context.WithCancel(context.Background())
	vm.bcancel = cancel
	vm.bdone = make(chan struct{})
	var wg sync.WaitGroup
	for _, sock := range vm.Sockets {
		b := &vport.Bridge{Socket: sock, Target: target, Log: vm.r.log.With("vm", vm.Name)}
		vm.bridges = append(vm.bridges, b)
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Run(ctx)
		}()
	}
	go func() { wg.Wait(); close(vm.bdone) }()
	return vm.bridges
}

func (vm *VM) stopBridges() {
	vm.bmu.Lock()
	cancel, done := vm.bcancel, vm.bdone
	vm.bcancel = nil
	vm.bmu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// ConsoleTail returns the last n bytes of the console log, for failure
// messages.
func (vm *VM) ConsoleTail(n int) string {
	b, err := os.ReadFile(vm.ConsoleLog)
	if err != nil {
		return fmt.Sprintf("(no console log: %v)", err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
