package executor

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/journal"
	"github.com/flotilla-fleet/flotilla/core"
)

// Launcher starts, watches and stops an upgrade candidate.
type Launcher interface {
	// Start runs bin with args as the candidate of attempt. onExit is
	// called once, from another goroutine, when the candidate ends on its
	// own (not when Stop ended it).
	Start(ctx context.Context, attempt uint32, bin string, args []string, onExit func(detail string)) error
	// Stop ends the attempt's candidate, also one started by an earlier
	// agent process; a candidate that is gone is not an error.
	Stop(ctx context.Context, attempt uint32) error
}

// Executor carries out the core's upgrade effects.
type Executor struct {
	Layout    Layout
	Source    Source
	PublicKey ed25519.PublicKey
	Launcher  Launcher
	// Args are the agent's own arguments (config file, flags) without
	// --candidate-attempt; candidates, self-tests and re-execs get them.
	Args            []string
	SelfTestTimeout time.Duration
	Log             *slog.Logger
	// Hook, when set, is called after each durable step ("fetch:done",
	// "swap:linked", "swap:renamed", ...). Crash-point tests kill the
	// process from it; production leaves it nil.
	Hook func(step string)
}

// DownloadRetries is how many times a transient download failure (the
// connection dropped, the source could not be opened) is retried, with
// backoff from 1s doubling, before the attempt fails.
const DownloadRetries = 4

// Download fetches the artifact into versions/<v>/flotilla-agent.
func (e *Executor) Download(ctx context.Context, v core.Version, ref core.ArtifactRef) error {
	bin, err := e.Layout.Binary(v)
	if err != nil {
		return &FetchError{Reason: core.ReasonDownloadFailed, Err: err}
	}
	delay := time.Second
	for try := 0; ; try++ {
		err = Fetch(ctx, e.Source, ref, bin, e.PublicKey)
		var fe *FetchError
		if err == nil || !errors.As(err, &fe) || !fe.Transient || try == DownloadRetries || ctx.Err() != nil {
			break
		}
		if e.Log != nil {
			e.Log.Warn("download failed; retrying", "version", v.String(), "err", err, "retry_in", delay)
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay *= 2
	}
	if err != nil {
		return err
	}
	call(e.Hook, "fetch:done")
	return nil
}

// SelfTest runs versions/<v>/flotilla-agent --self-test with the agent's
// arguments and returns its output in the error when it fails.
func (e *Executor) SelfTest(ctx context.Context, v core.Version) error {
	bin, err := e.Layout.Binary(v)
	if err != nil {
		return err
	}
	timeout := e.SelfTestTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--self-test"}, e.Args...)...)
	var out capped
	out.max = 2048
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("self-test of %s timed out after %s", v, timeout)
	}
	if err != nil {
		return fmt.Errorf("self-test of %s: %v: %s", v, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Swap points current at versions/<v>.
func (e *Executor) Swap(v core.Version) error { return e.Layout.SwapCurrent(v, e.Hook) }

// Preserve copies the running binary (self) to versions/<v>/ and points
// current at it when current is missing: the first upgrade of a fresh
// install must be able to roll back to what runs now.
func (e *Executor) Preserve(v core.Version, self string) error {
	bin, err := e.Layout.Binary(v)
	if err != nil {
		return err
	}
	sum, err := fileSHA256(self)
	if err != nil {
		return fmt.Errorf("preserve %s: hash running binary: %w", v, err)
	}
	if have, err := fileSHA256(bin); err != nil || have != sum {
		if err := copyDurable(self, bin); err != nil {
			return fmt.Errorf("preserve %s: %w", v, err)
		}
	}
	if err := writeSidecar(bin, sum); err != nil {
		return fmt.Errorf("preserve %s: %w", v, err)
	}
	call(e.Hook, "preserve:copied")
	cur, err := e.Layout.CurrentVersion()
	if err != nil || cur.IsZero() {
		return e.Swap(v)
	}
	return nil
}

func copyDurable(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := journal.SyncDir(filepath.Dir(filepath.Dir(dst))); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".partial"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	out.Close()
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return journal.SyncDir(filepath.Dir(dst))
}

// StartCandidate starts versions/<v>/flotilla-agent --candidate-attempt=A.
func (e *Executor) StartCandidate(ctx context.Context, attempt uint32, v core.Version, onExit func(string)) error {
	bin, err := e.Layout.Binary(v)
	if err != nil {
		return err
	}
	args := append(append([]string(nil), e.Args...), "--candidate-attempt="+strconv.FormatUint(uint64(attempt), 10))
	return e.Launcher.Start(ctx, attempt, bin, args, onExit)
}

// StopCandidate stops the attempt's candidate.
func (e *Executor) StopCandidate(ctx context.Context, attempt uint32) error {
	return e.Launcher.Stop(ctx, attempt)
}

// Remove deletes versions/<v>.
func (e *Executor) Remove(v core.Version) error { return e.Layout.Remove(v) }

// Reexec replaces this process with versions/<v>/flotilla-agent and the
// same arguments (same PID, same unit). It returns only on failure.
func (e *Executor) Reexec(v core.Version) error {
	bin, err := e.Layout.Binary(v)
	if err != nil {
		return err
	}
	argv := append([]string{bin}, e.Args...)
	return fmt.Errorf("re-exec %s: %w", bin, syscall.Exec(bin, argv, os.Environ()))
}

// StripCandidateFlag removes --candidate-attempt[=N] from args.
func StripCandidateFlag(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--candidate-attempt" || a == "-candidate-attempt":
			i++ // skip its value
		case strings.HasPrefix(a, "--candidate-attempt=") || strings.HasPrefix(a, "-candidate-attempt="):
		default:
			out = append(out, a)
		}
	}
	return out
}

// capped is an io.Writer keeping the first max bytes.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		if len(p) > room {
			c.Buffer.Write(p[:room])
		} else {
			c.Buffer.Write(p)
		}
	}
	return len(p), nil
}

var errNoSystemd = errors.New("systemd-run not found")
