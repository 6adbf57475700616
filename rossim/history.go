package rossim

// ForgetHistory makes the current state the first one History returns:
// a test that builds a large state and then probes one transition from it
// does not materialise every state on the way there.
func (r *Router) ForgetHistory() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hist.limit < 0 {
		return
	}
	for i := range r.hist.base {
		r.hist.base[i] = append([]*row(nil), r.db.t[i].rows...)
	}
	r.hist.entries = nil
}
