package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSelfTestExitStatus(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("device: dev-1\ndata_dir: "+filepath.Join(dir, "data")+"\nexecutor: process\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("device: dev.1\ndata_dir: "+filepath.Join(dir, "data")+"\n"), 0o644)
	corrupt := filepath.Join(dir, "corrupt.yaml")
	os.MkdirAll(filepath.Join(dir, "c"), 0o755)
	os.WriteFile(filepath.Join(dir, "c", "journal"), []byte("garbage line\n00000000 {}\n"), 0o600)
	os.WriteFile(corrupt, []byte("device: dev-1\ndata_dir: "+filepath.Join(dir, "c")+"\n"), 0o644)
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"good config", []string{"--self-test", "--config", good}, 0},
		{"invalid device name", []string{"--self-test", "--config", bad}, 1},
		{"missing config file", []string{"--self-test", "--config", filepath.Join(dir, "nope.yaml")}, 1},
		{"corrupt journal", []string{"--self-test", "--config", corrupt}, 1},
		{"flag overrides file", []string{"--self-test", "--config", bad, "--device", "dev-2", "--executor", "process"}, 0},
		{"version", []string{"version"}, 0},
		{"unknown flag", []string{"--bogus"}, 2},
		{"bad config without self-test", []string{"--config", bad}, 2},
	}
	for _, c := range cases {
		if got := run(c.args); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
}

func TestSelfTestNeedsSystemdToolsForTheSystemdExecutor(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("device: dev-1\ndata_dir: "+filepath.Join(dir, "data")+"\nexecutor: systemd\n"), 0o644)
	t.Setenv("PATH", t.TempDir())
	if got := run([]string{"--self-test", "--config", cfg}); got != 1 {
		t.Fatalf("self-test with executor systemd and no systemd-run: exit %d, want 1", got)
	}
}

func TestTestFaultIsInertByDefault(t *testing.T) {
	if testFault != "" {
		t.Fatalf("testFault is %q in a normal build", testFault)
	}
}
