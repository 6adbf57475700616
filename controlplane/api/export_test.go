package api

// ErrorTable exposes the codes of errorTable to tests.
func ErrorTable() map[string]int {
	out := map[string]int{}
	for code, e := range errorTable {
		out[code] = e.status
	}
	return out
}
