package container

import (
	"debug/elf"
	"errors"
	"fmt"
)

// StateDir is the agent's state directory inside the container: the image's
// volume, and the target of the /data mount the script creates.
const StateDir = "/data"

// Platform is how one supported architecture is named by Go and by image
// configs.
type Platform struct {
	GOARCH, GOARM string
	// Architecture and Variant as in the image config (OCI image spec).
	Architecture, Variant string
	// ELF machine of the binary, for checking a prebuilt one.
	Machine elf.Machine
	Class   elf.Class
}

// Platforms are the architectures RouterOS containers run (routeros.md
// section 4: arm, arm64, x86). "arm" is ARMv7 (GOARM=7): EN7562CT devices
// that only run arm32v5 are not supported.
var Platforms = map[string]Platform{
	"arm64": {GOARCH: "arm64", Architecture: "arm64", Variant: "v8", Machine: elf.EM_AARCH64, Class: elf.ELFCLASS64},
	"arm":   {GOARCH: "arm", GOARM: "7", Architecture: "arm", Variant: "v7", Machine: elf.EM_ARM, Class: elf.ELFCLASS32},
	"amd64": {GOARCH: "amd64", Architecture: "amd64", Machine: elf.EM_X86_64, Class: elf.ELFCLASS64},
}

// ErrUnknownArch is returned for an architecture not in Platforms.
var ErrUnknownArch = errors.New("unknown architecture; want arm64, arm or amd64")

// PlatformOf looks up arch in Platforms.
func PlatformOf(arch string) (Platform, error) {
	p, ok := Platforms[arch]
	if !ok {
		return Platform{}, fmt.Errorf("%q: %w", arch, ErrUnknownArch)
	}
	return p, nil
}
