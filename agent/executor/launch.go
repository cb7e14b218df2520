package executor

import (
	"context"
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
)

// ProcessLauncher runs the candidate as a sibling process in its own
// session, writing to the agent's stdout and stderr, so that it outlives the
// old agent's exit. Its PID is recorded in run/candidate-<attempt>.pid so a
// restarted agent can stop a candidate it did not start.
type ProcessLauncher struct {
	RunDir string
	Grace  time.Duration // SIGTERM → SIGKILL; default 5s
	Log    *slog.Logger

	mu    sync.Mutex
	procs map[uint32]*candidateProc
}

type candidateProc struct {
	cmd     *exec.Cmd
	stopped bool
	done    chan struct{}
}

func (p *ProcessLauncher) pidFile(attempt uint32) string {
	return filepath.Join(p.RunDir, fmt.Sprintf("candidate-%d.pid", attempt))
}

// Start implements Launcher.
func (p *ProcessLauncher) Start(ctx context.Context, attempt uint32, bin string, args []string, onExit func(string)) error {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start candidate %s: %w", bin, err)
	}
	if err := os.MkdirAll(p.RunDir, 0o755); err == nil {
		_ = os.WriteFile(p.pidFile(attempt), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	}
	cp := &candidateProc{cmd: cmd, done: make(chan struct{})}
	p.mu.Lock()
	if p.procs == nil {
		p.procs = map[uint32]*candidateProc{}
	}
	p.procs[attempt] = cp
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		close(cp.done)
		p.mu.Lock()
		stopped := cp.stopped
		delete(p.procs, attempt)
		p.mu.Unlock()
		_ = os.Remove(p.pidFile(attempt))
		if !stopped && onExit != nil {
			detail := "exited with status 0"
			if err != nil {
				detail = err.Error()
			}
			onExit(detail)
		}
	}()
	return nil
}

// Stop implements Launcher.
func (p *ProcessLauncher) Stop(ctx context.Context, attempt uint32) error {
	grace := p.Grace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	p.mu.Lock()
	cp := p.procs[attempt]
	if cp != nil {
		cp.stopped = true
	}
	p.mu.Unlock()
	if cp != nil {
		_ = cp.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-cp.done:
		case <-time.After(grace):
			_ = cp.cmd.Process.Kill()
			<-cp.done
		}
		return nil
	}
	// Started by an earlier agent process: find it by its PID file, and make
	// sure the PID still belongs to that candidate before signalling it.
	b, err := os.ReadFile(p.pidFile(attempt))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop candidate %d: %w", attempt, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		_ = os.Remove(p.pidFile(attempt))
		return nil
	}
	if !isCandidate(pid, attempt) {
		_ = os.Remove(p.pidFile(attempt))
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && isCandidate(pid, attempt) {
		time.Sleep(50 * time.Millisecond)
	}
	if isCandidate(pid, attempt) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = os.Remove(p.pidFile(attempt))
	return nil
}

// isCandidate reports whether pid is alive (not a zombie) and runs with
// --candidate-attempt=<attempt>.
func isCandidate(pid int, attempt uint32) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return false
		}
	}
	return strings.Contains(string(cmdline), "--candidate-attempt="+strconv.FormatUint(uint64(attempt), 10)+"\x00")
}

// SystemdLauncher runs the candidate as a transient unit
// flotilla-agent-candidate-<attempt> with systemd-run, so that it lives in
// its own cgroup and survives the old agent's unit. It restarts on failure,
// so a committed candidate that crashes comes back (and, reading the
// journal, knows it is the active agent).
type SystemdLauncher struct {
	Poll time.Duration // exit watch interval; default 2s
	Log  *slog.Logger
	// Env names variables passed to the unit with --setenv (transient units
	// do not inherit the caller's environment).
	Env []string

	mu      sync.Mutex
	stopped map[uint32]bool
}

// UnitName returns the transient unit of an attempt.
func UnitName(attempt uint32) string {
	return fmt.Sprintf("flotilla-agent-candidate-%d.service", attempt)
}

// Start implements Launcher.
func (s *SystemdLauncher) Start(ctx context.Context, attempt uint32, bin string, args []string, onExit func(string)) error {
	if _, err := exec.LookPath("systemd-run"); err != nil {
		return errNoSystemd
	}
	unit := UnitName(attempt)
	// A unit of the same name left from an earlier try would make
	// systemd-run fail; clear it.
	_ = exec.CommandContext(ctx, "systemctl", "reset-failed", unit).Run()
	argv := []string{"--unit=" + unit, "--collect", "--quiet",
		"--property=Restart=on-failure", "--property=RestartSec=2",
		"--property=KillMode=process"}
	for _, kv := range s.Env {
		argv = append(argv, "--setenv="+kv)
	}
	argv = append(append(argv, "--", bin), args...)
	out, err := exec.CommandContext(ctx, "systemd-run", argv...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemd-run %s: %v: %s", unit, err, strings.TrimSpace(string(out)))
	}
	s.mu.Lock()
	if s.stopped == nil {
		s.stopped = map[uint32]bool{}
	}
	delete(s.stopped, attempt)
	s.mu.Unlock()
	poll := s.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	go func() {
		for {
			time.Sleep(poll)
			s.mu.Lock()
			stopped := s.stopped[attempt]
			s.mu.Unlock()
			if stopped {
				return
			}
			state, _ := exec.Command("systemctl", "is-active", unit).Output()
			switch st := strings.TrimSpace(string(state)); st {
			case "active", "activating", "reloading":
				continue
			default:
				s.mu.Lock()
				stopped := s.stopped[attempt]
				s.mu.Unlock()
				if !stopped && onExit != nil {
					onExit("unit " + unit + " is " + st)
				}
				return
			}
		}
	}()
	return nil
}

// Stop implements Launcher.
func (s *SystemdLauncher) Stop(ctx context.Context, attempt uint32) error {
	s.mu.Lock()
	if s.stopped == nil {
		s.stopped = map[uint32]bool{}
	}
	s.stopped[attempt] = true
	s.mu.Unlock()
	unit := UnitName(attempt)
	out, err := exec.CommandContext(ctx, "systemctl", "stop", unit).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "not loaded") {
		return fmt.Errorf("systemctl stop %s: %v: %s", unit, err, strings.TrimSpace(string(out)))
	}
	return nil
}
