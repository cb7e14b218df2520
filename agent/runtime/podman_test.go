package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// fakePodman logs its arguments; inspect prints the file "inspect", logs
// prints three lines.
func fakePodman(t *testing.T) (bin, dir string) {
	dir = t.TempDir()
	bin = filepath.Join(dir, "podman")
	script := `#!/bin/sh
echo "$*" >> "` + dir + `/calls"
case "$1" in
inspect) cat "` + dir + `/inspect" 2>/dev/null || exit 125;;
logs) printf 'one\ntwo\nthree\n';;
esac
exit 0
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, dir
}

func TestPodmanRuntimeCommands(t *testing.T) {
	bin, dir := fakePodman(t)
	var sl statusLog
	p := &Podman{Bin: bin, Grace: 3 * time.Second, Poll: time.Hour, OnStatus: sl.add}
	spec := core.WorkloadSpec{Deployment: "web", Generation: 1, Name: "web", Version: "1.25", Runtime: core.RuntimePodman,
		Image: "docker.io/library/nginx:1.25", Args: []string{"nginx", "-g", "daemon off;"}, Env: map[string]string{"B": "2", "A": "1"}}
	ctx := context.Background()
	if err := p.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	if !strings.Contains(string(calls), "run -d --replace --name flotilla-web --label flotilla.deployment=web") ||
		!strings.Contains(string(calls), "-e A=1 -e B=2 docker.io/library/nginx:1.25 nginx -g daemon off;") {
		t.Fatalf("podman run call:\n%s", calls)
	}
	sl.waitFor(t, func(s Status) bool { return s.Phase == core.PhaseRunning })
	lines, trunc, err := p.Logs(ctx, "web", 2)
	if err != nil || strings.Join(lines, ",") != "two,three" || !trunc {
		t.Fatalf("logs %v %v %v", lines, trunc, err)
	}
	if err := p.Stop(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	calls, _ = os.ReadFile(filepath.Join(dir, "calls"))
	if !strings.Contains(string(calls), "stop -t 3 flotilla-web") || !strings.Contains(string(calls), "rm -f --ignore flotilla-web") {
		t.Fatalf("stop calls:\n%s", calls)
	}

	// A new agent process finds the container running the same spec and
	// keeps it.
	os.WriteFile(filepath.Join(dir, "inspect"), []byte(specHash(spec)+" running\n"), 0o644)
	os.Remove(filepath.Join(dir, "calls"))
	q := &Podman{Bin: bin, Poll: time.Hour, OnStatus: sl.add}
	spec.Generation = 2
	if err := q.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	calls, _ = os.ReadFile(filepath.Join(dir, "calls"))
	if strings.Contains(string(calls), "run ") {
		t.Fatalf("identical running container was replaced:\n%s", calls)
	}
}
