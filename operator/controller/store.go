// Package controller is the operator's Kubernetes side: controller-runtime
// reconcilers for Deployment, Device and AgentRollout that feed the
// decision core, and the writes the core asks for (status patches from its
// dirty set, Device creation and labels, finalizers, Events). Store
// implements runner.Store.
package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleet "github.com/flotilla-fleet/flotilla/operator/api/v1alpha1"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

// RBAC of the operator (make manifests writes operator/config/rbac/role.yaml):
//
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=deployments;devices;agentrollouts,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=deployments/status;devices/status;agentrollouts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=deployments/finalizers,verbs=update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// Store connects a controller-runtime manager to the operator core.
type Store struct {
	mgr       manager.Manager
	client    client.Client
	namespace string
	recorder  events.EventRecorder
	log       *slog.Logger
	now       func() time.Time

	mu    sync.Mutex
	sink  func(opcore.Input)
	ready chan struct{}
}

// New registers the three reconcilers with mgr. The manager's cache should
// be restricted to namespace (cache.Options.DefaultNamespaces).
func New(mgr manager.Manager, namespace string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{mgr: mgr, client: mgr.GetClient(), namespace: namespace,
		recorder: mgr.GetEventRecorder("flotilla-operator"), log: log, now: time.Now, ready: make(chan struct{})}
	for _, c := range []struct {
		name string
		obj  client.Object
		rec  reconcile.Func
	}{
		{"deployment", &fleet.Deployment{}, s.reconcileDeployment},
		{"device", &fleet.Device{}, s.reconcileDevice},
		{"agentrollout", &fleet.AgentRollout{}, s.reconcileAgentRollout},
	} {
		if err := ctrl.NewControllerManagedBy(mgr).Named("flotilla-" + c.name).For(c.obj).Complete(c.rec); err != nil {
			return nil, fmt.Errorf("register %s controller: %w", c.name, err)
		}
	}
	return s, nil
}

// Run implements runner.Store: after the cache has synced it delivers every
// object, then CachesSynced, then releases the reconcilers.
func (s *Store) Run(ctx context.Context, sink func(opcore.Input)) error {
	if !s.mgr.GetCache().WaitForCacheSync(ctx) {
		return fmt.Errorf("cache did not sync: %w", ctx.Err())
	}
	var deps fleet.DeploymentList
	var devs fleet.DeviceList
	var rolls fleet.AgentRolloutList
	in := client.InNamespace(s.namespace)
	for _, l := range []client.ObjectList{&deps, &devs, &rolls} {
		if err := s.client.List(ctx, l, in); err != nil {
			return fmt.Errorf("list objects: %w", err)
		}
	}
	for i := range deps.Items {
		sink(opcore.DeploymentUpsert{Spec: DeploymentToCore(&deps.Items[i])})
	}
	for i := range devs.Items {
		sink(opcore.DeviceUpsert{Device: DeviceToCore(&devs.Items[i])})
	}
	for i := range rolls.Items {
		sink(opcore.AgentRolloutUpsert{Spec: AgentRolloutToCore(&rolls.Items[i])})
	}
	sink(opcore.CachesSynced{})
	s.log.Info("caches synced", "deployments", len(deps.Items), "devices", len(devs.Items), "agentRollouts", len(rolls.Items))
	s.mu.Lock()
	s.sink = sink
	close(s.ready)
	s.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (s *Store) deliver(ctx context.Context, in opcore.Input) error {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.sink(in)
	return nil
}

func (s *Store) ours(ns string) bool { return s.namespace == "" || ns == s.namespace }

func (s *Store) reconcileDeployment(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !s.ours(req.Namespace) {
		return reconcile.Result{}, nil
	}
	var d fleet.Deployment
	if err := s.client.Get(ctx, req.NamespacedName, &d); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, s.deliver(ctx, opcore.DeploymentDeleted{Name: req.Name})
		}
		return reconcile.Result{}, err
	}
	if d.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(&d, fleet.DeploymentFinalizer) {
		base := d.DeepCopy()
		controllerutil.AddFinalizer(&d, fleet.DeploymentFinalizer)
		if err := s.client.Patch(ctx, &d, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return reconcile.Result{}, fmt.Errorf("add finalizer to deployment %s: %w", d.Name, err)
		}
	}
	return reconcile.Result{}, s.deliver(ctx, opcore.DeploymentUpsert{Spec: DeploymentToCore(&d)})
}

func (s *Store) reconcileDevice(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !s.ours(req.Namespace) {
		return reconcile.Result{}, nil
	}
	var d fleet.Device
	if err := s.client.Get(ctx, req.NamespacedName, &d); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, s.deliver(ctx, opcore.DeviceDeleted{Name: req.Name})
		}
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, s.deliver(ctx, opcore.DeviceUpsert{Device: DeviceToCore(&d)})
}

func (s *Store) reconcileAgentRollout(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !s.ours(req.Namespace) {
		return reconcile.Result{}, nil
	}
	var r fleet.AgentRollout
	if err := s.client.Get(ctx, req.NamespacedName, &r); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, s.deliver(ctx, opcore.AgentRolloutDeleted{Name: req.Name})
		}
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, s.deliver(ctx, opcore.AgentRolloutUpsert{Spec: AgentRolloutToCore(&r)})
}

func (s *Store) key(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: s.namespace, Name: name}
}

// Apply implements runner.Store.
func (s *Store) Apply(ctx context.Context, e opcore.Effect) error {
	now := s.now()
	switch e := e.(type) {
	case opcore.PatchDeploymentStatus:
		return s.updateStatus(ctx, e.Name, &fleet.Deployment{}, func(o client.Object) {
			ApplyDeploymentStatus(o.(*fleet.Deployment), e.Status, now)
		}, true)
	case opcore.PatchDeviceStatus:
		return s.updateStatus(ctx, e.Name, &fleet.Device{}, func(o client.Object) {
			ApplyDeviceStatus(o.(*fleet.Device), e.Status, now)
		}, false)
	case opcore.PatchAgentRolloutStatus:
		return s.updateStatus(ctx, e.Name, &fleet.AgentRollout{}, func(o client.Object) {
			ApplyAgentRolloutStatus(o.(*fleet.AgentRollout), e.Status, now)
		}, true)
	case opcore.CreateDevice:
		d := &fleet.Device{ObjectMeta: metav1.ObjectMeta{Name: e.Name, Namespace: s.namespace, Labels: e.Labels}}
		if err := s.client.Create(ctx, d); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create device %s: %w", e.Name, err)
		}
		return nil
	case opcore.PatchDeviceLabels:
		var d fleet.Device
		if err := s.client.Get(ctx, s.key(e.Name), &d); err != nil {
			return ignoreNotFound(err, "get device "+e.Name)
		}
		base := d.DeepCopy()
		if d.Labels == nil {
			d.Labels = map[string]string{}
		}
		for k, v := range e.Labels {
			d.Labels[k] = v
		}
		return ignoreNotFound(s.client.Patch(ctx, &d, client.MergeFrom(base)), "patch device labels "+e.Name)
	case opcore.RemoveFinalizer:
		var d fleet.Deployment
		if err := s.client.Get(ctx, s.key(e.Name), &d); err != nil {
			return ignoreNotFound(err, "get deployment "+e.Name)
		}
		if !controllerutil.ContainsFinalizer(&d, fleet.DeploymentFinalizer) {
			return nil
		}
		base := d.DeepCopy()
		controllerutil.RemoveFinalizer(&d, fleet.DeploymentFinalizer)
		return ignoreNotFound(s.client.Patch(ctx, &d, client.MergeFrom(base)), "remove finalizer of deployment "+e.Name)
	case opcore.Notice:
		var obj client.Object
		switch e.Kind {
		case opcore.KindDeployment:
			obj = &fleet.Deployment{}
		case opcore.KindDevice:
			obj = &fleet.Device{}
		case opcore.KindAgentRollout:
			obj = &fleet.AgentRollout{}
		default:
			return fmt.Errorf("event for unknown kind %q", e.Kind)
		}
		if err := s.client.Get(ctx, s.key(e.Name), obj); err != nil {
			return ignoreNotFound(err, "get "+e.Kind+" "+e.Name+" for an event")
		}
		typ := "Normal"
		if e.Warning {
			typ = "Warning"
		}
		s.recorder.Eventf(obj, nil, typ, e.Reason, "Reconcile", "%s", e.Message)
		return nil
	}
	return fmt.Errorf("controller store: unexpected effect %T", e)
}

// updateStatus replaces the status subresource of one object (the whole
// status: a merge patch would drop zero counts and keep stale map keys). On
// a conflict it re-reads the object from the API server and tries again.
func (s *Store) updateStatus(ctx context.Context, name string, obj client.Object, apply func(client.Object), missingOK bool) error {
	var err error
	for try := 0; try < 3; try++ {
		if try == 0 {
			err = s.client.Get(ctx, s.key(name), obj)
		} else {
			err = s.mgr.GetAPIReader().Get(ctx, s.key(name), obj)
		}
		if err != nil {
			break
		}
		apply(obj)
		if err = s.client.Status().Update(ctx, obj); !apierrors.IsConflict(err) {
			break
		}
	}
	if err != nil && missingOK && apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update status of %T %s: %w", obj, name, err)
	}
	return nil
}

func ignoreNotFound(err error, what string) error {
	if err == nil || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Scheme returns a scheme with the Kubernetes built-in types and the
// fleet.flotilla.dev types.
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
