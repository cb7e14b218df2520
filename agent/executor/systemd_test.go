package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// fakeSystemd puts systemd-run and systemctl stand-ins first on PATH: they
// log their arguments, and is-active answers from the file "state".
func fakeSystemd(t *testing.T) (dir string) {
	dir = t.TempDir()
	script := `#!/bin/sh
echo "$(basename "$0") $*" >> "` + dir + `/calls"
if [ "$(basename "$0")" = systemctl ] && [ "$1" = is-active ]; then cat "` + dir + `/state"; fi
exit 0
`
	for _, n := range []string{"systemd-run", "systemctl"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "state"), []byte("active\n"), 0o644)
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return dir
}

func TestSystemdLauncherRunsATransientUnit(t *testing.T) {
	dir := fakeSystemd(t)
	s := &SystemdLauncher{Poll: 20 * time.Millisecond, Env: []string{"FLOTILLA_NATS_URL=nats://x:4222"}}
	exited := make(chan string, 1)
	err := s.Start(context.Background(), 7, "/var/lib/flotilla/versions/v2.0.0/flotilla-agent",
		[]string{"--config", "/etc/flotilla/agent.yaml", "--candidate-attempt=7"}, func(d string) { exited <- d })
	if err != nil {
		t.Fatal(err)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	for _, want := range []string{"systemd-run --unit=flotilla-agent-candidate-7.service", "--property=Restart=on-failure",
		"--setenv=FLOTILLA_NATS_URL=nats://x:4222", "-- /var/lib/flotilla/versions/v2.0.0/flotilla-agent --config /etc/flotilla/agent.yaml --candidate-attempt=7"} {
		if !strings.Contains(string(calls), want) {
			t.Fatalf("systemd-run call lacks %q:\n%s", want, calls)
		}
	}
	os.WriteFile(filepath.Join(dir, "state"), []byte("failed\n"), 0o644)
	select {
	case d := <-exited:
		if !strings.Contains(d, "failed") {
			t.Fatalf("exit detail %q", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("unit failure not reported")
	}

	// A stopped unit is not reported as an exit.
	os.WriteFile(filepath.Join(dir, "state"), []byte("active\n"), 0o644)
	stopped := make(chan string, 1)
	s.Start(context.Background(), 8, "/bin/true", nil, func(d string) { stopped <- d })
	if err := s.Stop(context.Background(), 8); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "state"), []byte("inactive\n"), 0o644)
	select {
	case d := <-stopped:
		t.Fatalf("stop reported as exit: %s", d)
	case <-time.After(200 * time.Millisecond):
	}
	calls, _ = os.ReadFile(filepath.Join(dir, "calls"))
	if !strings.Contains(string(calls), "systemctl stop flotilla-agent-candidate-8.service") {
		t.Fatalf("no systemctl stop:\n%s", calls)
	}
}

func TestHTTPSourceFetchesOverTLS(t *testing.T) {
	body := []byte("agent binary over https")
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/agent" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	sum := sha256.Sum256(body)
	ref := core.ArtifactRef{URL: srv.URL + "/agent", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(body))}
	src := MultiSource{HTTP: HTTPSource{Client: srv.Client()}}
	dst := filepath.Join(t.TempDir(), "v", BinaryName)
	if err := Fetch(context.Background(), src, ref, dst, nil); err != nil {
		t.Fatal(err)
	}
	ref.URL = srv.URL + "/missing"
	err := Fetch(context.Background(), src, ref, filepath.Join(t.TempDir(), "w", BinaryName), nil)
	var fe *FetchError
	if !errors.As(err, &fe) || fe.Reason != core.ReasonDownloadFailed || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404 gave %v", err)
	}
}
