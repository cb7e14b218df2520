package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/flotilla-fleet/flotilla/web"
)

// startScenario runs a simulator scenario in scaled real time behind the
// dashboard.
func startScenario(ctx context.Context, file string, speed float64, log *slog.Logger) (web.FleetService, error) {
	return nil, errors.New("--scenario: watching a simulation is not available in this build yet; use --mock for the seeded demo fleet")
}
