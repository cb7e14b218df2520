package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/flotilla-fleet/flotilla/operator/controller"
	"github.com/flotilla-fleet/flotilla/operator/natsadapter"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/operator/runner"
)

func init() {
	register("run", "run the operator (Kubernetes + NATS)", runOperator)
}

type runFlags struct {
	natsURL, natsCreds      string
	kubeconfig, namespace   string
	metricsAddr, healthAddr string
	leaderElect             bool
	leaderElectionID        string
	tick, offlineAfter      time.Duration
	attemptTimeout          time.Duration
	commandTimeout          time.Duration
	cutoverTimeoutSec       int
	createDevices           bool
	logLevel                string
	// skipNameValidation lets a test process run the operator more than
	// once (controller names are unique per process); no flag sets it.
	skipNameValidation bool
}

func parseRunFlags(args []string) (runFlags, error) {
	var f runFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&f.natsURL, "nats-url", envOr("NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL")
	fs.StringVar(&f.natsCreds, "nats-creds", os.Getenv("NATS_CREDS"), "NATS credentials file (optional)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig path; empty uses in-cluster config")
	fs.StringVar(&f.namespace, "namespace", envOr("POD_NAMESPACE", "default"), "namespace of the Deployment, Device and AgentRollout objects")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "Prometheus metrics address (\"0\" disables)")
	fs.StringVar(&f.healthAddr, "health-probe-bind-address", ":8081", "health and readiness probe address")
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "enable leader election (one active operator per namespace)")
	fs.StringVar(&f.leaderElectionID, "leader-election-id", "flotilla-operator.fleet.flotilla.dev", "leader election lease name")
	fs.DurationVar(&f.tick, "tick", time.Second, "how often the dirty set is flushed and rollouts advance")
	fs.DurationVar(&f.offlineAfter, "offline-after", 30*time.Second, "heartbeat age after which a device is offline")
	fs.DurationVar(&f.attemptTimeout, "attempt-timeout", 10*time.Minute, "agent upgrade attempt without progress for this long counts as failed")
	fs.DurationVar(&f.commandTimeout, "command-timeout", 5*time.Second, "device command timeout")
	fs.IntVar(&f.cutoverTimeoutSec, "cutover-timeout", 120, "seconds the old agent waits for upgrade-stop (written into markers)")
	fs.BoolVar(&f.createDevices, "create-devices", true, "create a Device object for every device that reports device-info")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if f.namespace == "" {
		return f, errors.New("--namespace must not be empty")
	}
	return f, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func runOperator(ctx context.Context, args []string) int {
	f, err := parseRunFlags(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-operator run:", err)
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-operator run: --log-level:", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(log)
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))
	if err := run(ctx, f, log); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("operator stopped", "err", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, f runFlags, log *slog.Logger) error {
	var cfgLoader clientcmd.ClientConfig
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cfgLoader = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	restCfg, err := cfgLoader.ClientConfig()
	if err != nil {
		if f.kubeconfig != "" {
			return fmt.Errorf("load kubeconfig %s: %w", f.kubeconfig, err)
		}
		if restCfg, err = ctrl.GetConfig(); err != nil {
			return fmt.Errorf("kubernetes config: %w", err)
		}
	}
	scheme, err := controller.Scheme()
	if err != nil {
		return err
	}
	opts := []nats.Option{}
	if f.natsCreds != "" {
		opts = append(opts, nats.UserCredentials(f.natsCreds))
	}
	// Connect retries forever and never waits for the server: NATS being
	// down at start (or later) is a state the runner rides out.
	nc, err := natsadapter.Connect(f.natsURL, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	mgr, err := ctrl.NewManager(restCfg, manager.Options{
		Scheme:                  scheme,
		Cache:                   cache.Options{DefaultNamespaces: map[string]cache.Config{f.namespace: {}}},
		Metrics:                 metricsserver.Options{BindAddress: f.metricsAddr},
		HealthProbeBindAddress:  f.healthAddr,
		LeaderElection:          f.leaderElect,
		LeaderElectionID:        f.leaderElectionID,
		LeaderElectionNamespace: f.namespace,
		Controller:              config.Controller{SkipNameValidation: &f.skipNameValidation},
	})
	if err != nil {
		return fmt.Errorf("controller manager: %w", err)
	}
	store, err := controller.New(mgr, f.namespace, log)
	if err != nil {
		return err
	}
	r := NewOperatorRunner(nc, store, f, log)
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Ready once NATS is connected and the recovery latch is Converged (only
	// the leader gets there). Two checks, so /readyz?verbose names the one
	// that fails: "[-]nats failed" or "[-]converged failed".
	if err := mgr.AddReadyzCheck("nats", func(*http.Request) error {
		if !r.Status().Connected {
			return errors.New("NATS disconnected")
		}
		return nil
	}); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("converged", func(*http.Request) error {
		if !r.Converged() {
			return errors.New("operator is " + string(opcore.Recovering))
		}
		return nil
	}); err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(r.Run)); err != nil {
		return err
	}
	log.Info("starting", "namespace", f.namespace, "nats", f.natsURL, "leaderElection", f.leaderElect)
	return mgr.Start(ctx)
}

// NewOperatorRunner builds the runner with the flags' core configuration
// and registers the operator's metrics with controller-runtime's registry.
func NewOperatorRunner(nc *nats.Conn, store runner.Store, f runFlags, log *slog.Logger) *runner.Runner {
	return runner.New(runner.Options{
		NATS:  nc,
		Store: store,
		Core: opcore.Config{OfflineAfter: f.offlineAfter, AttemptTimeout: f.attemptTimeout,
			CutoverTimeoutSec: f.cutoverTimeoutSec, TickInterval: f.tick, CreateDevices: f.createDevices},
		CommandTimeout: f.commandTimeout,
		Logger:         log,
		Metrics:        runner.NewMetrics(metrics.Registry),
	})
}
