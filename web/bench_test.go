package web

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkPages measures full page renders (service call + template) over
// a 10,000-device mock fleet, as a browser would request them.
func BenchmarkPages(b *testing.B) {
	m, err := NewMockFleetService(MockConfig{Seed: 1, Devices: 10_000})
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewServer(Options{Service: m, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, path, target string }{
		{"overview", "/", ""},
		{"devices", "/devices", ""},
		{"devices-page-100", "/devices?page=100", ""},
		{"devices-filtered", "/devices?online=offline&label=site%3Dberlin", ""},
		{"devices-fragment-500", "/devices?phase=Idle&per_page=500", "device-table"},
		{"device", "/devices/dev-05000", ""},
		{"deployment", "/deployments/camera-ingest", ""},
		{"rollout", "/rollouts/agent-2026-11", ""},
		{"rollouts", "/rollouts", ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", tc.path, nil)
				if tc.target != "" {
					req.Header.Set("HX-Request", "true")
					req.Header.Set("HX-Target", tc.target)
				}
				w := httptest.NewRecorder()
				s.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("GET %s: %d", tc.path, w.Code)
				}
			}
		})
	}
	b.Run("step", func(b *testing.B) {
		for b.Loop() {
			m.Step()
		}
	})
}
