package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/flotilla-fleet/flotilla/web"
)

func startScenario(ctx context.Context, file string, speed float64, log *slog.Logger) (web.FleetService, func(), error) {
	return nil, func() {}, errors.New("--scenario is not available yet")
}
