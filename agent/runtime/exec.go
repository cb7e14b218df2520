package runtime

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// Exec runs args (already validated and clamped by core.CommandRequest) with
// a deadline, in its own process group so that a timeout kills the children
// too, and keeps at most MaxOutput bytes of stdout and stderr together.
func Exec(ctx context.Context, a core.ExecArgs) core.ExecResult {
	timeout := time.Duration(a.TimeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = core.DefaultExecTimeout * time.Millisecond
	}
	limit := a.MaxOutput
	if limit <= 0 || limit > core.MaxExecOutput {
		limit = core.MaxExecOutput
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.Command[0], a.Command[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	budget := &outputBudget{left: limit}
	stdout, stderr := &budgetWriter{b: budget}, &budgetWriter{b: budget}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	res := core.ExecResult{Stdout: stdout.buf.String(), Stderr: stderr.buf.String(), Truncated: budget.truncated}
	var ee *exec.ExitError
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		res.TimedOut, res.ExitCode = true, -1
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
	case err != nil:
		res.ExitCode = -1
		if budget.room() > 0 {
			res.Stderr += core.Truncate(err.Error(), budget.room())
		}
	}
	return res
}

type outputBudget struct {
	mu        sync.Mutex
	left      int
	truncated bool
}

func (b *outputBudget) room() int { b.mu.Lock(); defer b.mu.Unlock(); return b.left }

type budgetWriter struct {
	b   *outputBudget
	buf bytes.Buffer
}

func (w *budgetWriter) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	n := min(len(p), w.b.left)
	w.buf.Write(p[:n])
	w.b.left -= n
	if n < len(p) {
		w.b.truncated = true
	}
	return len(p), nil
}

// Ring keeps the last lines written to it (the agent's own log, for the
// logs command without a deployment).
type Ring struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
	part  []byte
}

// NewRing returns a ring of n lines.
func NewRing(n int) *Ring { return &Ring{lines: make([]string, n)} }

// Write implements io.Writer, splitting on newlines.
func (r *Ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data := append(r.part, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		r.lines[r.next] = string(data[:i])
		r.next = (r.next + 1) % len(r.lines)
		if r.next == 0 {
			r.full = true
		}
		data = data[i+1:]
	}
	r.part = append([]byte(nil), data...)
	return len(p), nil
}

// Last returns up to n of the newest lines, oldest first, and whether older
// ones existed.
func (r *Ring) Last(n int) ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []string
	if r.full {
		all = append(all, r.lines[r.next:]...)
	}
	all = append(all, r.lines[:r.next]...)
	if len(all) <= n {
		return all, r.full // a full ring has overwritten older lines
	}
	return all[len(all)-n:], true
}
