package metrictest

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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
	r := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		Counter(r, reg, "things_total", "result", "unknown")
	}()
	if want := `no things_total{result="unknown"}`; r.failed != want {
		t.Errorf("missing series: failure %q, want %q", r.failed, want)
	}
}

// recorder is a testing.TB that records a failure instead of stopping the
// test, so the helper's failure path can be checked.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}
