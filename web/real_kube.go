package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"k8s.io/client-go/tools/clientcmd"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/flotilla-fleet/flotilla/operator/api/v1alpha1"
)

// Scheme knows the Flotilla CRDs (and the built-in types).
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := fleet.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// KubeClients are an informer cache over one namespace (for reads) and a
// direct client (for patches).
type KubeClients struct {
	Cache  cache.Cache
	Client client.Client
}

// NewKubeClients builds the cache and the client; StartKube starts them.
func NewKubeClients(cfg *rest.Config, namespace string) (KubeClients, error) {
	scheme, err := Scheme()
	if err != nil {
		return KubeClients{}, err
	}
	c, err := cache.New(cfg, cache.Options{Scheme: scheme, DefaultNamespaces: map[string]cache.Config{namespace: {}}})
	if err != nil {
		return KubeClients{}, fmt.Errorf("kubernetes cache: %w", err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return KubeClients{}, fmt.Errorf("kubernetes client: %w", err)
	}
	return KubeClients{Cache: c, Client: cl}, nil
}

// StartKube registers change handlers that feed the service's live
// updates, starts the cache and waits for it to sync.
func (s *RealFleetService) StartKube(ctx context.Context, c cache.Cache) error {
	for _, kind := range []struct {
		obj  client.Object
		kind string
	}{{&fleet.Device{}, KindDevice}, {&fleet.Deployment{}, KindDeployment}, {&fleet.AgentRollout{}, KindRollout}} {
		inf, err := c.GetInformer(ctx, kind.obj)
		if err != nil {
			return fmt.Errorf("informer for %s: %w", kind.kind, err)
		}
		notify := func(obj any) {
			if o, ok := obj.(client.Object); ok {
				s.Notify(kind.kind, o.GetName())
			} else if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				if o, ok := t.Obj.(client.Object); ok {
					s.Notify(kind.kind, o.GetName())
				}
			}
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    notify,
			UpdateFunc: func(_, obj any) { notify(obj) },
			DeleteFunc: notify,
		}); err != nil {
			return fmt.Errorf("watch %s: %w", kind.kind, err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		select {
		case err := <-errc:
			return fmt.Errorf("kubernetes cache: %w", err)
		default:
			return errors.New("kubernetes cache did not sync")
		}
	}
	return nil
}

// RealOptions are what a command line gives StartReal.
type RealOptions struct {
	// Kubeconfig is a kubeconfig file; empty means $KUBECONFIG, then the
	// in-cluster config, then ~/.kube/config.
	Kubeconfig string
	Namespace  string
	// NATSURL, when set, enables heartbeats, device info and commands.
	NATSURL string
	Logger  *slog.Logger
}

// StartReal connects to Kubernetes (and NATS), syncs the cache and starts
// following heartbeats. stop closes the NATS connection; ctx ends the rest.
func StartReal(ctx context.Context, o RealOptions) (svc *RealFleetService, stop func(), err error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var cfg *rest.Config
	if o.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	} else {
		cfg, err = ctrlconfig.GetConfig()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes config: %w", err)
	}
	kc, err := NewKubeClients(cfg, o.Namespace)
	if err != nil {
		return nil, nil, err
	}
	var nc *nats.Conn
	if o.NATSURL != "" {
		nc, err = nats.Connect(o.NATSURL, nats.Name("flotilla-web"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
		if err != nil {
			return nil, nil, fmt.Errorf("connect to NATS at %s: %w", o.NATSURL, err)
		}
	}
	stop = func() {
		if nc != nil {
			nc.Close()
		}
	}
	svc, err = NewRealFleetService(RealConfig{Reader: kc.Cache, Writer: kc.Client, Namespace: o.Namespace, NATS: nc, Logger: o.Logger})
	if err != nil {
		stop()
		return nil, nil, err
	}
	if err := svc.StartKube(ctx, kc.Cache); err != nil {
		stop()
		return nil, nil, err
	}
	go func() {
		if err := svc.Run(ctx); err != nil {
			o.Logger.Error("following NATS stopped; online state and versions fall back to the Device status", "err", err)
		}
	}()
	return svc, stop, nil
}
