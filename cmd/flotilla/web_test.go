package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestWebMockServesTheDashboard(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- runWeb(ctx, []string{"--mock", "--mock-devices", "100", "--addr", addr, "--tick", "100ms"})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("flotilla web exited %d after cancel, want 0", code)
		}
	})
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/devices?per_page=5")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET /devices: %d", resp.StatusCode)
			}
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dashboard did not come up on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(body, "<strong>100</strong> devices match") || !strings.Contains(body, "Flotilla (mock)") {
		t.Errorf("mock dashboard page lacks the 100-device fleet:\n%.500s", body)
	}
}

// startWeb runs `flotilla web args... --addr <free port>` until the test
// ends and returns the base URL once it answers.
func startWeb(t *testing.T, args ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- runWeb(ctx, append(args, "--addr", addr)) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("flotilla web exited %d after cancel, want 0", code)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("dashboard did not come up on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWebWatchesASimulation(t *testing.T) {
	const speed = 600
	started := time.Now()
	base := startWeb(t, "--mock", "--scenario", "../../scenarios/self-test-failure.yaml", "--speed", fmt.Sprint(speed), "--mock-devices", "40")
	// The run goes on while the overview is served, and ends with a verdict.
	deadline := time.Now().Add(60 * time.Second)
	var body string
	for {
		_, body = get(t, base+"/")
		if strings.Contains(body, "finished at") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, want := range []string{"Simulation of scenario self-test-failure finished at", "passed", ">40</span> devices", "v1.1.0", "Committed", "Failed"} {
		if !strings.Contains(body, want) {
			t.Errorf("simulation overview lacks %q:\n%.2000s", want, body)
		}
	}
	// Scaled real time: the run may not finish faster than its simulated
	// length divided by the speed.
	elapsed := time.Since(started)
	if m := regexp.MustCompile(`finished at ([0-9hms.]+)`).FindStringSubmatch(body); m != nil {
		simulated, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatal(err)
		}
		if min := simulated / speed * 9 / 10; elapsed < min {
			t.Errorf("%s of simulated time went by in %s of wall time at speed %d: not paced (want at least %s)", simulated, elapsed, speed, min)
		}
	}
	if code, body := get(t, base+"/devices"); code != 501 || !strings.Contains(body, "fleet totals only") {
		t.Errorf("device list in simulation mode: %d, want 501 saying why", code)
	}
}

func TestWebRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--mock", "--mock-devices", "3"},
		{"--scenario", "x.yaml"},
		{"--no-such-flag"},
		{"--mock", "stray"},
		{"--mock", "--scenario", "../../scenarios/self-test-failure.yaml", "--speed", "0"},
		{"--mock", "--scenario", "no-such-file.yaml"},
	} {
		if code := runWeb(context.Background(), args); code != 2 {
			t.Errorf("flotilla web %v exited %d, want 2", args, code)
		}
	}
}
