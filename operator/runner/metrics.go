package runner

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
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
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
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
	}
	if reg != nil {
		reg.MustRegister(m.devices, m.online, m.inFlight, m.converged, m.kvOps, m.commands, m.commandErrors, m.badValues)
	}
	return m
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
