// Package container is how the Rampart agent is installed as a RouterOS
// container: the facts the image and the router must agree on (the
// platforms, the state directory, the container network's defaults) and the
// enrollment, the agent's environment and the RouterOS script that installs
// it. Building the image itself is package container/image, kept apart so
// that the control plane's API, which serves enrollments, does not link the
// image builder and go-containerregistry.
//
// # Enrollment
//
// Site describes one site's agent. Site.Env returns the agent's environment
// (the DESIGN.md section 9 variables) and Site.Script a RouterOS script that
// creates the veth, the API user and group, restricts the API service, sets
// the container's environment and mount, adds the container from the
// tarball and starts it. Both are pure functions of their inputs, so an HTTP
// handler can serve them as easily as the `enroll` subcommand prints them.
// Every value placed in the script goes through Quote, which escapes it for
// RouterOS's double-quoted strings.
//
// The script is generated for one RouterOS version
// (ScriptOptions.RouterOSVersion; RouterOSVersions lists the supported
// ones) and names only what exists on it: RouterOS refuses, when it loads a
// script, an argument name its version lacks. routeros.go has the names that
// changed across 7.x, their sources, and why the script is generated per
// version rather than assembled at run time with [:parse]. Tests, the
// simulator's among them, call it as the control plane does:
//
//	s := container.ForSite(key, org, site, "tcp://broker:1883")
//	script, err := s.Script(container.ScriptOptions{RouterOSVersion: "7.21"})
package container
