package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

func TestCensusOverviewAndHonest501s(t *testing.T) {
	svc := NewCensusFleetService()
	versions := map[string]int{"v1.0.0": 7, "v1.1.0": 12, "none": 1}
	phases := map[core.AgentUpgradePhase]int{core.UpgradeCommitted: 12, core.UpgradeFailed: 5, core.UpgradeIdle: 3}
	svc.Update(Census{AsOf: MockEpoch, Versions: versions, Phases: phases, Online: 18, Note: "Simulation of scenario s at 5m"})
	versions["v1.0.0"] = 999 // Update copied the maps

	o, err := svc.Overview(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if o.Total != 20 || o.Online != 18 || o.Offline != 2 {
		t.Errorf("totals %d/%d/%d, want 20/18/2", o.Total, o.Online, o.Offline)
	}
	if want := []Count{{"v1.1.0", 12}, {"v1.0.0", 7}, {"none", 1}}; !equalCounts(o.ByVersion, want) {
		t.Errorf("by version %v, want %v", o.ByVersion, want)
	}
	if want := []Count{{"Idle", 3}, {"Committed", 12}, {"Failed", 5}}; !equalCounts(o.ByPhase, want) {
		t.Errorf("by phase %v, want %v", o.ByPhase, want)
	}
	if _, err := svc.ListDevices(context.Background(), DeviceQuery{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("ListDevices: %v, want ErrUnavailable", err)
	}

	srv, err := NewServer(Options{Service: svc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c := &http.Client{Timeout: 10 * time.Second}
	for path, want := range map[string]int{"/": 200, "/devices": 501, "/devices/dev-1": 501, "/rollouts": 501, "/deployments/x": 501} {
		resp, err := c.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
		if want == 200 && !strings.Contains(string(b), "Simulation of scenario s at 5m") {
			t.Errorf("overview lacks the note")
		}
		if want == 501 && !strings.Contains(string(b), "fleet totals only") {
			t.Errorf("GET %s: the 501 page does not say why", path)
		}
	}
}

func equalCounts(a, b []Count) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
