package shell

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/agent/journal"
	"github.com/flotilla-fleet/flotilla/core"
)

// ---- start-up -------------------------------------------------------------

func (s *Shell) startInput() (agentcore.Start, error) {
	lay := s.o.Executor.Layout
	if err := lay.Init(); err != nil {
		return agentcore.Start{}, err
	}
	recs, err := s.o.Journal.Read()
	if !journal.Usable(err) {
		return agentcore.Start{}, err
	}
	if err != nil {
		s.log.Error("journal has a corrupt record; continuing with the intact ones", "err", err)
	}
	cur, err := lay.CurrentVersion()
	if err != nil {
		s.log.Error("current link unreadable", "err", err)
	}
	inst, err := lay.Installed()
	if err != nil {
		return agentcore.Start{}, err
	}
	return agentcore.Start{BootID: s.o.BootID, CandidateAttempt: s.o.CandidateAttempt,
		Journal: recs, Current: cur, Installed: inst}, nil
}

// BootID reads the kernel's boot id (empty when unavailable).
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// pidFile is run/agent.pid: the PID of the device's active agent, for
// operators and test harnesses (the PID changes with every upgrade).
func (s *Shell) pidFile() string { return filepath.Join(s.o.Executor.Layout.RunDir(), "agent.pid") }

func (s *Shell) writePIDFile() {
	tmp := s.pidFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err == nil {
		_ = os.Rename(tmp, s.pidFile())
	}
}

// removePIDFile removes run/agent.pid if it still names this process.
func (s *Shell) removePIDFile() {
	if b, err := os.ReadFile(s.pidFile()); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(s.pidFile())
	}
}

func verStr(v core.Version) string {
	if v.IsZero() {
		return ""
	}
	return v.String()
}
