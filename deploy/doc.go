// Package deploy holds example configurations for running Rampart beyond
// one machine (README.md beside it): a 3-node NATS cluster, PostgreSQL
// settings, systemd units for the control plane. It has no code; its tests
// check the files against the real programs that read them (nats-server
// -t, systemd-analyze verify, the control plane's own flags), so an
// example cannot drift into one that does not start. The PostgreSQL files
// are checked by controlplane/store/postgres's tests, against a real
// server.
package deploy
