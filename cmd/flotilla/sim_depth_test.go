package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

const depthBase = "../../sim/sweep/testdata/planted-base.yaml"

// The command line: a passing sweep exits 0; a failing one exits 1; bad
// usage exits 2 with a message; shrink writes a regression scenario that
// the strict loader accepts; --report writes the HTML and PNG.
func TestSimSweepAndShrinkCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if code := runSimDepth(ctx, "sweep", []string{depthBase, "--seeds", "3", "--devices", "4", "--parallel", "2"}); code != 0 {
		t.Fatalf("passing sweep exited %d", code)
	}
	for _, bad := range [][]string{
		{depthBase},                                 // no --seeds
		{depthBase, "--seeds", "0"},                 // zero seeds
		{depthBase, "--seeds", "2", "--bogus"},      // unknown flag
		{depthBase, "--seeds", "2", "--plant", "x"}, // compiled out (or unknown bug)
		{"does-not-exist.yaml", "--seeds", "2"},
	} {
		if code := runSimDepth(ctx, "sweep", bad); code != 2 {
			t.Errorf("sweep %v exited %d, want 2", bad, code)
		}
	}

	// A scenario no seed passes: its rollout never pauses.
	data, err := os.ReadFile(depthBase)
	if err != nil {
		t.Fatal(err)
	}
	failing := filepath.Join(dir, "failing.yaml")
	if err := os.WriteFile(failing, []byte(strings.Replace(string(data), "expect:\n", "expect:\n  rollout_paused: true\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	html := filepath.Join(dir, "r.html")
	if code := runSimDepth(ctx, "sweep", []string{failing, "--seeds", "4", "--devices", "6", "--report", html}); code != 1 {
		t.Fatalf("failing sweep exited %d, want 1", code)
	}
	for _, f := range []string{html, filepath.Join(dir, "r.png")} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("report file %s: %v", f, err)
		}
	}
	out := filepath.Join(dir, "regressions")
	if code := runSimDepth(ctx, "shrink", []string{failing, "--seed", "2", "--devices", "6", "--out", out, "--name", "never-paused"}); code != 0 {
		t.Fatalf("shrink exited %d", code)
	}
	sc, err := scenario.Load(filepath.Join(out, "never-paused.yaml"))
	if err != nil {
		t.Fatalf("written regression does not load: %v", err)
	}
	if sc.Fleet.Devices != 1 || sc.Seed != 2 {
		t.Errorf("regression: %d devices, seed %d; want 1 device, seed 2", sc.Fleet.Devices, sc.Seed)
	}
	if code := runSimDepth(ctx, "shrink", []string{depthBase, "--seed", "1", "--devices", "3", "--out", out}); code != 1 {
		t.Errorf("shrinking a passing seed exited %d, want 1", code)
	}
}
