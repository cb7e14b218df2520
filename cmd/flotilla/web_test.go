package main

import (
	"context"
	"io"
	"net"
	"net/http"
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

func TestWebRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--mock", "--mock-devices", "3"},
		{"--scenario", "x.yaml"},
		{"--no-such-flag"},
		{"--mock", "stray"},
	} {
		if code := runWeb(context.Background(), args); code != 2 {
			t.Errorf("flotilla web %v exited %d, want 2", args, code)
		}
	}
}
