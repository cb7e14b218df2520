package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/flotilla-fleet/flotilla/web"
)

func init() {
	register("web", "serve the dashboard (--mock for a seeded demo fleet)", runWeb)
}

// webFlags are the flags shared by `flotilla web` and
// `flotilla-operator serve-web` (which has its own copy in its package).
type webFlags struct {
	addr, token, adminToken, userHeader, groupsHeader, adminUsers, adminGroups string
}

func (f *webFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", web.DefaultAddr, "listen address")
	fs.StringVar(&f.token, "token", os.Getenv("FLOTILLA_WEB_TOKEN"), "require this bearer token (env FLOTILLA_WEB_TOKEN); read-only when --admin-token is set")
	fs.StringVar(&f.adminToken, "admin-token", os.Getenv("FLOTILLA_WEB_ADMIN_TOKEN"), "bearer token with admin rights (env FLOTILLA_WEB_ADMIN_TOKEN)")
	fs.StringVar(&f.userHeader, "auth-header", "", "trust this header for the user name, set by an authenticating proxy (e.g. X-Forwarded-User)")
	fs.StringVar(&f.groupsHeader, "groups-header", "", "trust this header for the user's comma-separated groups (e.g. X-Forwarded-Groups)")
	fs.StringVar(&f.adminUsers, "admin-users", "", "comma-separated users with admin rights (with --auth-header)")
	fs.StringVar(&f.adminGroups, "admin-groups", "", "comma-separated groups with admin rights (with --groups-header)")
}

func (f *webFlags) auth() web.AuthConfig {
	return web.AuthConfig{Token: f.token, AdminToken: f.adminToken, UserHeader: f.userHeader,
		GroupsHeader: f.groupsHeader, AdminUsers: splitList(f.adminUsers), AdminGroups: splitList(f.adminGroups)}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func runWeb(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("flotilla web", flag.ContinueOnError)
	var wf webFlags
	wf.register(fs)
	mock := fs.Bool("mock", false, "serve a seeded mock fleet instead of a real one")
	devices := fs.Int("mock-devices", web.DefaultMockDevices, "number of mock devices (up to 1,000,000)")
	seed := fs.Uint64("seed", 1, "mock fleet seed")
	tick := fs.Duration("tick", 2*time.Second, "advance the mock fleet every this often (0 freezes it)")
	scenario := fs.String("scenario", "", "with --mock: run this simulator scenario file in scaled real time")
	speed := fs.Float64("speed", 60, "with --scenario: virtual seconds per wall-clock second")
	real := realFlags{}
	real.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: flotilla web --mock [flags]\n       flotilla web --kubeconfig FILE --nats URL [flags]\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
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
		s, stop, err := startScenario(ctx, *scenario, *speed, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "flotilla web: %v\n", err)
			return 1
		}
		defer stop()
		svc, title = s, "Flotilla (simulation)"
	case *mock:
		m, err := web.NewMockFleetService(web.MockConfig{Seed: *seed, Devices: *devices, Start: time.Now().UTC().Truncate(time.Second)})
		if err != nil {
			fmt.Fprintf(os.Stderr, "flotilla web: %v\n", err)
			return 2
		}
		if *tick > 0 {
			go m.Run(ctx, *tick)
		}
		svc, title = m, "Flotilla (mock)"
	default:
		s, stop, err := real.start(ctx, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "flotilla web: %v\n", err)
			return 1
		}
		defer stop()
		svc = s
	}
	srv, err := web.NewServer(web.Options{Service: svc, Auth: wf.auth(), Logger: log, Title: title})
	if err != nil {
		fmt.Fprintf(os.Stderr, "flotilla web: %v\n", err)
		return 1
	}
	if err := web.Serve(ctx, wf.addr, srv, log, nil); err != nil {
		fmt.Fprintf(os.Stderr, "flotilla web: %v\n", err)
		return 1
	}
	return 0
}
