// Package executor carries out the agent core's upgrade effects on the real
// filesystem: downloading and verifying a new agent binary into
// versions/<v>/, running its --self-test, swapping the current link
// atomically, and starting, watching and stopping the candidate process,
// either as a systemd transient unit or as a sibling process.
//
// On-disk layout under the data directory:
//
//	current -> versions/v1.2.0        relative symlink, replaced with rename(2)
//	versions/v1.2.0/flotilla-agent     the binary
//	versions/v1.2.0/flotilla-agent.sha256
//	journal                            see agent/journal
//	run/candidate-<attempt>.pid        candidates started by the process launcher
//
// Every step that creates or renames an entry fsyncs the directory, so a
// power cut leaves either the old or the new state, never a half.
package executor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/flotilla-fleet/flotilla/agent/journal"
	"github.com/flotilla-fleet/flotilla/core"
)

// BinaryName is the agent binary's file name inside versions/<v>/.
const BinaryName = "flotilla-agent"

// Layout names the paths under the data directory.
type Layout struct{ Dir string }

func (l Layout) VersionsDir() string { return filepath.Join(l.Dir, "versions") }
func (l Layout) Current() string     { return filepath.Join(l.Dir, "current") }
func (l Layout) Journal() string     { return filepath.Join(l.Dir, "journal") }
func (l Layout) RunDir() string      { return filepath.Join(l.Dir, "run") }
func (l Layout) WorkloadsDir() string {
	return filepath.Join(l.Dir, "workloads")
}

// VersionDir returns versions/<v>, refusing any version string that could
// escape the versions directory.
func (l Layout) VersionDir(v core.Version) (string, error) {
	s := v.String()
	if err := safeComponent(s); err != nil {
		return "", fmt.Errorf("version %q: %w", s, err)
	}
	return filepath.Join(l.VersionsDir(), s), nil
}

// Binary returns versions/<v>/flotilla-agent.
func (l Layout) Binary(v core.Version) (string, error) {
	d, err := l.VersionDir(v)
	if err != nil {
		return "", err
	}
	return filepath.Join(d, BinaryName), nil
}

// safeComponent accepts one path component with no traversal.
func safeComponent(s string) error {
	switch {
	case s == "" || s == "." || s == "..":
		return errors.New("not a usable directory name")
	case strings.ContainsAny(s, "/\\\x00"):
		return errors.New("contains a path separator or NUL")
	case filepath.Base(s) != s:
		return errors.New("not a single path component")
	}
	return nil
}

// Init creates the directories the agent needs and removes leftovers of an
// interrupted swap (current.tmp-*) or download (*.partial).
func (l Layout) Init() error {
	for _, d := range []string{l.Dir, l.VersionsDir(), l.RunDir(), l.WorkloadsDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	stale, _ := filepath.Glob(l.Current() + ".tmp-*")
	partial, _ := filepath.Glob(filepath.Join(l.VersionsDir(), "*", "*.partial"))
	for _, p := range append(stale, partial...) {
		_ = os.Remove(p)
	}
	return nil
}

// CurrentVersion reads where current points; the zero Version when the link
// is missing.
func (l Layout) CurrentVersion() (core.Version, error) {
	target, err := os.Readlink(l.Current())
	if errors.Is(err, os.ErrNotExist) {
		return core.Version{}, nil
	}
	if err != nil {
		return core.Version{}, fmt.Errorf("read current link: %w", err)
	}
	v, err := core.ParseVersion(filepath.Base(target))
	if err != nil {
		return core.Version{}, fmt.Errorf("current link points at %q: %w", target, err)
	}
	return v, nil
}

// Installed lists the versions with a complete binary under versions/,
// oldest first.
func (l Layout) Installed() ([]core.Version, error) {
	ents, err := os.ReadDir(l.VersionsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	var out []core.Version
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		v, err := core.ParseVersion(e.Name())
		if err != nil {
			continue
		}
		if fi, err := os.Stat(filepath.Join(l.VersionsDir(), e.Name(), BinaryName)); err == nil && fi.Mode().IsRegular() {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out, nil
}

// SwapCurrent points current at versions/<v> atomically: a new symlink at a
// temporary name, rename(2) over current, fsync of the directory. The target
// must hold a regular, executable binary.
func (l Layout) SwapCurrent(v core.Version, hook func(string)) error {
	bin, err := l.Binary(v)
	if err != nil {
		return err
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return fmt.Errorf("swap to %s: %w", v, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o100 == 0 {
		return fmt.Errorf("swap to %s: %s is not an executable file", v, bin)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", l.Current(), os.Getpid())
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Join("versions", v.String()), tmp); err != nil {
		return fmt.Errorf("swap to %s: %w", v, err)
	}
	call(hook, "swap:linked")
	if err := os.Rename(tmp, l.Current()); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("swap to %s: %w", v, err)
	}
	call(hook, "swap:renamed")
	return journal.SyncDir(l.Dir)
}

// Remove deletes versions/<v>; it refuses the version current points at.
func (l Layout) Remove(v core.Version) error {
	cur, _ := l.CurrentVersion()
	if !cur.IsZero() && cur.String() == v.String() {
		return fmt.Errorf("remove %s: current points at it", v)
	}
	d, err := l.VersionDir(v)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(d); err != nil {
		return fmt.Errorf("remove %s: %w", v, err)
	}
	return journal.SyncDir(l.VersionsDir())
}

func call(hook func(string), step string) {
	if hook != nil {
		hook(step)
	}
}
