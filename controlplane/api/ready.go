package api

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// ReadyCheck is one of /readyz's checks beyond the store's Ping, such as
// the MQTT broker's connection or a writable disk.
type ReadyCheck struct {
	// Name is what /readyz prints when the check fails ("broker").
	Name  string
	Check func(ctx context.Context) error
}

// readyz answers 200 "ok" when the store and every Options.Ready check
// pass, else 503 with one "<name> not ready" line per failure. The causes
// go to the log, not to this unauthenticated answer.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := append([]ReadyCheck{{Name: "store", Check: s.opts.Store.Ping}}, s.opts.Ready...)
	var failed []string
	for _, c := range checks {
		if err := c.Check(ctx); err != nil {
			s.log.Error("readiness check failed", "request_id", requestID(w), "check", c.Name, "error", err)
			failed = append(failed, c.Name)
		}
	}
	if len(failed) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, name := range failed {
			fmt.Fprintln(w, name, "not ready")
		}
		return
	}
	fmt.Fprintln(w, "ok")
}
