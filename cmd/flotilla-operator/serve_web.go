package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/flotilla-fleet/flotilla/web"
)

func init() {
	register("serve-web", "serve the dashboard for the fleet in this cluster", runServeWeb)
}

func runServeWeb(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("flotilla-operator serve-web", flag.ContinueOnError)
	wf := web.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: flotilla-operator serve-web [--addr HOST:PORT] [--namespace NS] [--nats URL] [auth flags]\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	opts := wf.Real()
	opts.Logger = log
	svc, stop, err := web.StartReal(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flotilla-operator serve-web: %v\n", err)
		return 1
	}
	defer stop()
	srv, err := web.NewServer(web.Options{Service: svc, Auth: wf.Auth(), Logger: log})
	if err != nil {
		fmt.Fprintf(os.Stderr, "flotilla-operator serve-web: %v\n", err)
		return 1
	}
	if err := web.Serve(ctx, wf.Addr, srv, log, nil); err != nil {
		fmt.Fprintf(os.Stderr, "flotilla-operator serve-web: %v\n", err)
		return 1
	}
	return 0
}
