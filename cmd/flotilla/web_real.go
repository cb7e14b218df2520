package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"

	"github.com/flotilla-fleet/flotilla/web"
)

// realFlags select the real fleet: Kubernetes for the CRs, NATS for
// heartbeats and commands.
type realFlags struct {
	kubeconfig, namespace, natsURL string
}

func (f *realFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster running the operator (default: in-cluster or $KUBECONFIG)")
	fs.StringVar(&f.namespace, "namespace", "", "namespace of the Flotilla CRs (default: all)")
	fs.StringVar(&f.natsURL, "nats", "", "NATS URL for heartbeats and commands")
}

func (f *realFlags) start(ctx context.Context, log *slog.Logger) (web.FleetService, func(), error) {
	return nil, func() {}, errors.New("the real fleet service is not wired yet: use --mock")
}
