// Package container is everything needed to run the Rampart agent as a
// RouterOS container: the image tarball RouterOS imports, and the
// environment and RouterOS script that install it on a router.
//
// # Images
//
// BuildImage compiles ./cmd/rampart-agent statically for one platform (or
// takes a prebuilt binary) and wraps it in a one-layer image on an empty base;
// WriteTarball writes it in the `docker save` layout RouterOS's
// `/container/add file=` loads. One platform per file: RouterOS cannot load a
// multi-platform archive (routeros.md section 4, "Images"). No Docker engine is
// involved; the repository's Dockerfile builds the same image where Docker
// exists, and the two are kept equal by hand (entrypoint, user, env, volume:
// see ImageConfig).
//
// The layer is a single uncompressed tar and the archive carries both the
// manifest.json of current `docker save` and the legacy per-layer
// directories (`<id>/layer.tar`, `<id>/json`, `VERSION`, `repositories`) of
// Docker's v1 save format. RouterOS's loader is known to reject some archives
// that other tools accept; the reported working recipe is a single
// uncompressed layer in the Docker v1 layout (routeros.md section 4 citing
// tikoci's OCI image notes and tangentsoft's "Container Limitations"), so the
// archive is built to that recipe while staying loadable by `docker load` and
// `podman load`.
//
// # Enrollment
//
// Site describes one site's agent. Site.Env returns the agent's environment
// (the section 9 variables) and Site.Script a RouterOS script that creates the
// veth, the API user and group, restricts the API service, sets the
// container's environment and mount, adds the container from the tarball and
// starts it. Both are pure functions of their inputs, so an HTTP handler can
// serve them as easily as the `enroll` subcommand prints them. Every value
// placed in the script goes through Quote, which escapes it for RouterOS's
// double-quoted strings.
package container
