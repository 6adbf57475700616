// Package rossim simulates a MikroTik router running RouterOS 7, as seen
// through its binary API (port 8728): the wire protocol, login, the
// firewall filter and address-list menus with RouterOS's semantics and error
// texts, and a packet evaluator over the simulated firewall. Tests and
// benchmarks of the agent drive it with the real client
// (github.com/go-routeros/routeros/v3) over TCP.
//
// Fidelity rule: when the simulator and a real router disagree, the simulator
// is wrong. Every behaviour is sourced from /work/shared/reference/routeros.md
// (tags [C] confirmed, [3P] third party, [I] inference) in a comment beside
// the code; the table below summarises.
package rossim
