package metrictest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-fw/rampart/internal/tbfail"
)

func TestCounter(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "things_total", Help: "Things."}, []string{"result"})
	reg.MustRegister(c)
	c.WithLabelValues("ok").Add(3)
	c.WithLabelValues("failed").Inc()
	for result, want := range map[string]float64{"ok": 3, "failed": 1} {
		if got := Counter(t, reg, "things_total", "result", result); got != want {
			t.Errorf("things_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	failed := tbfail.Fatalf(t, func(tb testing.TB) { Counter(tb, reg, "things_total", "result", "unknown") })
	if want := `no things_total{result="unknown"}`; failed != want {
		t.Errorf("missing series: failure %q, want %q", failed, want)
	}
}
