package api

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/rampart-fw/rampart/controlplane"
)

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec

	// The children of requests and latency by their labels, resolved once
	// instead of hashing the label values on every request. Children are
	// still created on first use, so /metrics shows the same series.
	counters  sync.Map // counterKey -> prometheus.Counter
	observers sync.Map // route -> prometheus.Observer
}

type counterKey struct {
	route string
	code  int
}

func newMetrics(reg prometheus.Registerer, store Store) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_http_requests_total",
			Help: "HTTP requests served, by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rampart_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, &resourceCollector{store: store}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(pattern string, code int, d time.Duration) {
	if pattern == "" {
		pattern = "unmatched"
	}
	k := counterKey{pattern, code}
	c, ok := m.counters.Load(k)
	if !ok {
		c, _ = m.counters.LoadOrStore(k, m.requests.WithLabelValues(pattern, strconv.Itoa(code)))
	}
	c.(prometheus.Counter).Inc()
	o, ok := m.observers.Load(pattern)
	if !ok {
		o, _ = m.observers.LoadOrStore(pattern, m.latency.WithLabelValues(pattern))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
}

// resourceCollector reports groups and prefix lists by status at scrape
// time, straight from the store, so the numbers cannot drift from it.
type resourceCollector struct{ store Store }

var resourcesDesc = prometheus.NewDesc("rampart_resources",
	"Security groups and prefix lists, by kind and sync status.", []string{"kind", "status"}, nil)

func (c *resourceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- resourcesDesc }

func (c *resourceCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.store.CountByStatus(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(resourcesDesc, err)
		return
	}
	for _, kind := range []string{cp.KindSecurityGroup, cp.KindPrefixList} {
		for _, st := range cp.Statuses {
			ch <- prometheus.MustNewConstMetric(resourcesDesc, prometheus.GaugeValue, float64(counts[kind][st]), kind, string(st))
		}
	}
}
