package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-fw/rampart/internal/buildinfo"
)

// metrics are the agent's Prometheus series (DESIGN.md section 10), all
// registered on the registry passed in Options.
type metrics struct {
	applyDuration    prometheus.Histogram
	applies          *prometheus.CounterVec
	operations       *prometheus.CounterVec
	driftRepairs     prometheus.Counter
	documents        *prometheus.CounterVec
	desiredRevision  prometheus.Gauge
	appliedRevision  prometheus.Gauge
	lastApplied      prometheus.Gauge
	managedRules     prometheus.Gauge
	managedEntries   prometheus.Gauge
	mqttConnected    prometheus.Gauge
	routerConnected  prometheus.Gauge
	routerReconnects prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rampart_agent_apply_duration_seconds",
			Help:    "Time to make the router's firewall match the desired state, from reading it to the read-back.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_agent_applies_total",
			Help: "Applies by result (applied, failed).",
		}, []string{"result"}),
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_agent_routeros_operations_total",
			Help: "Writes sent to the router by kind (add, set, remove, move).",
		}, []string{"kind"}),
		driftRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_agent_drift_repairs_total",
			Help: "Writes that repaired managed rules or entries changed on the router by someone else.",
		}),
		documents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_agent_desired_documents_total",
			Help: "Desired-state documents received, by outcome (accepted, stale, invalid, too_new: a schema newer than the agent reads).",
		}, []string{"outcome"}),
		desiredRevision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rampart_agent_desired_revision",
			Help: "Revision of the last accepted desired state.",
		}),
		appliedRevision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rampart_agent_applied_revision",
			Help: "Revision of the desired state the router last matched.",
		}),
		lastApplied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rampart_agent_last_apply_success_timestamp_seconds",
			Help: "Unix time of the last successful apply.",
		}),
		managedRules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rampart_agent_managed_rules",
			Help: "Filter rules the agent manages on the router (jumps included).",
		}),
		managedEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rampart_agent_managed_address_entries",
			Help: "Address-list entries the agent manages on the router.",
		}),
		mqttConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rampart_agent_mqtt_connected",
			Help: "1 while the broker connection is up.",
		}),
		routerConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rampart_agent_routeros_connected",
			Help: "1 when the last RouterOS API exchange succeeded.",
		}),
		routerReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_agent_routeros_errors_total",
			Help: "Failed applies whose cause was not a refusal (!trap) by the router: connection, login, protocol, or a read-back mismatch.",
		}),
	}
	buildinfo.Register(reg, "agent")
	reg.MustRegister(m.applyDuration, m.applies, m.operations, m.driftRepairs, m.documents,
		m.desiredRevision, m.appliedRevision, m.lastApplied, m.managedRules, m.managedEntries,
		m.mqttConnected, m.routerConnected, m.routerReconnects)
	for _, k := range []string{"add", "set", "remove", "move"} {
		m.operations.WithLabelValues(k)
	}
	for _, r := range []string{"applied", "failed"} {
		m.applies.WithLabelValues(r)
	}
	for _, o := range []string{"accepted", "stale", "invalid", "too_new"} {
		m.documents.WithLabelValues(o)
	}
	return m
}
