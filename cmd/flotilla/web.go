package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/flotilla-fleet/flotilla/web"
)

func init() {
	register("web", "serve the dashboard (--mock for a seeded demo fleet)", runWeb)
}

func runWeb(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("flotilla web", flag.ContinueOnError)
	wf := web.RegisterFlags(fs)
	mock := fs.Bool("mock", false, "serve a seeded mock fleet instead of a real one")
	devices := fs.Int("mock-devices", web.DefaultMockDevices, "number of mock devices (12 to 1,000,000)")
	seed := fs.Uint64("seed", 1, "mock fleet seed")
	tick := fs.Duration("tick", 2*time.Second, "advance the mock fleet every this often (0 freezes it)")
	scenario := fs.String("scenario", "", "with --mock: run this simulator scenario in scaled real time; the overview shows it live (--mock-devices overrides its fleet size)")
	speed := fs.Float64("speed", 60, "with --scenario: virtual seconds per wall-clock second")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: flotilla web --mock [--mock-devices N] [--addr HOST:PORT] [flags]\n"+
			"       flotilla web --mock --scenario FILE [--speed 60]\n"+
			"       flotilla web --kubeconfig FILE --namespace NS --nats URL [flags]\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "flotilla web: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var svc web.FleetService
	title := "Flotilla"
	switch {
	case *scenario != "":
		if !*mock {
			fmt.Fprintln(os.Stderr, "flotilla web: --scenario needs --mock")
			return 2
		}
		simDevices := 0 // the scenario's own fleet size unless --mock-devices is given
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "mock-devices" {
				simDevices = *devices
			}
		})
		s, err := startScenario(ctx, *scenario, *speed, simDevices, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "flotilla web: %v\n", err)
			return 2
		}
		svc, title = s, "Flotilla (simulation)"
	case *mock:
		m, err := web.NewMockFleetService(web.MockConfig{Seed: *seed, Devices: *devices, Start: time.Now().UTC().Truncate(time.Second), StepInterval: *tick})
		if err != nil {
			fmt.Fprintf(os.Stderr, "flotilla web: %v\n", err)
			return 2
		}
		if *tick > 0 {
			go m.Run(ctx, *tick)
		}
		svc, title = m, "Flotilla (mock)"
	default:
		opts := wf.Real()
		opts.Logger = log
		s, stop, err := web.StartReal(ctx, opts)
		if err != nil {
			fmt.Fprintf(os.Stderr, "flotilla web: %v (use --mock for a demo fleet)\n", err)
			return 1
		}
		defer stop()
		svc = s
	}
	srv, err := web.NewServer(web.Options{Service: svc, Auth: wf.Auth(), Logger: log, Title: title})
	if err != nil {
		fmt.Fprintf(os.Stderr, "flotilla web: %v\n", err)
		return 1
	}
	if err := web.Serve(ctx, wf.Addr, srv, log, nil); err != nil {
		fmt.Fprintf(os.Stderr, "flotilla web: %v\n", err)
		return 1
	}
	return 0
}
