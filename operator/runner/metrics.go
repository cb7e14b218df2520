package runner

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/operator/runcore"
)

// Metrics are the operator's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	devices       prometheus.Gauge
	online        prometheus.Gauge
	inFlight      prometheus.Gauge
	converged     prometheus.Gauge
	kvOps         *prometheus.CounterVec
	commands      *prometheus.CounterVec
	commandErrors *prometheus.CounterVec
	badValues     prometheus.Gauge
	natsUp        prometheus.Gauge
	source        atomic.Pointer[func() runcore.Status]
}

var (
	registeredMu sync.Mutex
	registered   = map[prometheus.Registerer]*Metrics{}
)

// NewMetrics creates the metrics and registers them with reg. A registry
// has one set: a second call with the same reg returns the first set, which
// then reports the runner that uses it last (a process that runs the
// operator twice, as test suites do).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg != nil {
		registeredMu.Lock()
		defer registeredMu.Unlock()
		if m := registered[reg]; m != nil {
			return m
		}
	}
	m := &Metrics{
		devices: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flotilla_operator_devices",
			Help: "Devices the operator knows (Device objects or device-info keys)."}),
		online: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flotilla_operator_devices_online",
			Help: "Devices whose last heartbeat arrived within the offline window."}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flotilla_operator_rollouts_in_flight",
			Help: "AgentRollouts with devices waiting or in progress."}),
		converged: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flotilla_operator_converged",
			Help: "1 once caches synced and KV replayed (liveness latch), else 0."}),
		kvOps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flotilla_operator_kv_operations_total",
			Help: "KV writes carried out, by operation and result."}, []string{"op", "result"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flotilla_operator_commands_total",
			Help: "Device commands sent, by verb and outcome code (ok on success)."}, []string{"verb", "code"}),
		commandErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flotilla_operator_command_errors_total",
			Help: "Device commands that failed, by verb and error code."}, []string{"verb", "code"}),
		badValues: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flotilla_operator_bad_kv_values",
			Help: "KV values seen since start that did not decode."}),
		natsUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flotilla_operator_nats_connected",
			Help: "1 while the NATS connection is up, else 0."}),
	}
	st := func(f func(runcore.Status) float64) func() float64 {
		return func() float64 {
			if src := m.source.Load(); src != nil {
				return f((*src)())
			}
			return 0
		}
	}
	fromStatus := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flotilla_operator_kv_outbox_depth",
			Help: "KV keys waiting to be written or reconciled (in flight included)."},
			st(func(s runcore.Status) float64 { return float64(s.OutboxDepth) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flotilla_operator_kv_writes_in_flight",
			Help: "KV writes and reconciling reads in flight."},
			st(func(s runcore.Status) float64 { return float64(s.WritesInFlight) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flotilla_operator_object_write_backlog",
			Help: "Object writes queued or in flight."},
			st(func(s runcore.Status) float64 { return float64(s.ObjectBacklog) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flotilla_operator_kv_write_retries_total",
			Help: "KV writes issued again after a failure or a reconcile that found them missing."},
			st(func(s runcore.Status) float64 { return float64(s.WriteRetries) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flotilla_operator_kv_write_reconciles_total",
			Help: "KV writes that timed out and were checked with a Get."},
			st(func(s runcore.Status) float64 { return float64(s.Reconciles) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flotilla_operator_kv_write_reconciled_landed_total",
			Help: "Timed-out KV writes that the check found had landed."},
			st(func(s runcore.Status) float64 { return float64(s.ReconcileLand) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flotilla_operator_kv_outbox_refused_total",
			Help: "KV writes refused because the outbox was full."},
			st(func(s runcore.Status) float64 { return float64(s.OutboxRefused) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flotilla_operator_watch_restarts_total",
			Help: "KV watches recreated after a failure or a reconnect."},
			st(func(s runcore.Status) float64 { return float64(s.WatchRestarts) })),
	}
	if reg != nil {
		reg.MustRegister(m.devices, m.online, m.inFlight, m.converged, m.kvOps, m.commands, m.commandErrors,
			m.badValues, m.natsUp)
		reg.MustRegister(fromStatus...)
		registered[reg] = m
	}
	return m
}

func (m *Metrics) setSource(f func() runcore.Status) {
	if m != nil {
		m.source.Store(&f)
	}
}

func (m *Metrics) connected(up bool) {
	if m == nil {
		return
	}
	if up {
		m.natsUp.Set(1)
	} else {
		m.natsUp.Set(0)
	}
}

func (m *Metrics) observe(s opcore.Stats, phase opcore.Phase) {
	if m == nil {
		return
	}
	m.devices.Set(float64(s.Devices))
	m.online.Set(float64(s.DevicesOnline))
	m.inFlight.Set(float64(s.RolloutsActive))
	m.badValues.Set(float64(s.BadValues))
	if phase == opcore.Converged {
		m.converged.Set(1)
	} else {
		m.converged.Set(0)
	}
}

func (m *Metrics) kvOp(op string, err error) {
	if m == nil {
		return
	}
	res := "ok"
	if err != nil {
		res = "error"
	}
	m.kvOps.WithLabelValues(op, res).Inc()
}

func (m *Metrics) command(verb string, code core.ErrorCode) {
	if m == nil {
		return
	}
	c := string(code)
	if c == "" {
		c = "ok"
	} else {
		m.commandErrors.WithLabelValues(verb, c).Inc()
	}
	m.commands.WithLabelValues(verb, c).Inc()
}
