package rossim

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Image tarballs. /container/add file= loads a `docker save` archive
// [C: manual containers, "podman save or docker save"]. A tarball with more
// than one image (a multi-platform save) cannot be loaded [3P: tangentsoft
// "Container Limitations"]; an image for another architecture extracts but
// cannot run: the process fails to exec [3P: catesin/AmneziaWG-MikroTik#20,
// "signal 4 (Illegal instruction)" for armv7 on an armv5 device; I for the
// wording here]. OCI layouts (index.json) are not modelled.

// maxImageMeta bounds the JSON files read from a tarball (manifest and
// config); layers are skipped unread.
const maxImageMeta = 1 << 20

// imageArch returns the architecture of the single image in the docker-save
// tarball at path, e.g. "arm64".
func imageArch(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	meta := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("not a tar archive: %w", err)
		}
		if h.Typeflag == tar.TypeReg && h.Size <= maxImageMeta && (strings.HasSuffix(h.Name, ".json") || !strings.Contains(h.Name, "/")) {
			b, err := io.ReadAll(io.LimitReader(tr, maxImageMeta))
			if err != nil {
				return "", fmt.Errorf("read %s: %w", h.Name, err)
			}
			meta[h.Name] = b
		}
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	b, ok := meta["manifest.json"]
	if !ok {
		return "", errors.New("no manifest.json: not a docker-save archive")
	}
	if err := json.Unmarshal(b, &manifest); err != nil {
		return "", fmt.Errorf("manifest.json: %w", err)
	}
	if len(manifest) != 1 {
		return "", fmt.Errorf("%d images in one tarball: RouterOS loads single-platform tarballs only", len(manifest))
	}
	var cfg struct {
		Architecture, OS string
	}
	if err := json.Unmarshal(meta[manifest[0].Config], &cfg); err != nil || cfg.Architecture == "" {
		return "", fmt.Errorf("image config %s has no architecture", manifest[0].Config)
	}
	if cfg.OS != "" && cfg.OS != "linux" {
		return "", fmt.Errorf("image is for %s, not linux", cfg.OS)
	}
	return cfg.Architecture, nil
}

// runsOn reports whether an image of architecture arch runs on a router
// whose /system/resource architecture-name is routerArch.
func runsOn(arch, routerArch string) bool {
	switch arch {
	case "amd64":
		return routerArch == "x86_64" || routerArch == "x86"
	case "arm":
		return routerArch == "arm" || routerArch == "arm64" // [I] arm64 boards run 32-bit ARM images
	}
	return arch == routerArch
}
