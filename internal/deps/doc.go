// Package deps holds, as a test, the rules about which of Rampart's packages
// may depend on which: the lines that keep the agent, the wire protocol and
// the image builder apart from the control plane, and the simulator (the
// judge of RouterOS behaviour) apart from what it judges. The test walks the
// real import graph (`go list -deps`), so a rule breaks the build's tests the
// moment an import crosses it, with the import chain that does.
package deps
