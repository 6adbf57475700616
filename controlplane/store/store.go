// Package store is the home of the control plane's storage adapters. Each
// technology has its own subpackage (bolt for bbolt, the default;
// postgres for several replicas on one database, DESIGN.md section 11).
// Consumers declare the small interfaces they need where they use them (the
// api package's Store, the syncer's Store), and every adapter implements
// them with the same behaviour; the rules themselves (validation, rule and
// prefix id keeping, sync status, the site state machine) live in the
// controlplane package, so an adapter only reads records, calls them and
// persists what they return, and adapters cannot drift apart.
//
// What every store must do is one test suite, storetest, which each
// adapter runs against itself. Dump is a store's content in a form every
// adapter reads and writes, for moving a store from one adapter to
// another (`rampart-controlplane migrate`).
package store
