package main

import (
	"testing"

	"github.com/rampart-fw/rampart/internal/buildinfo/buildinfotest"
)

// TestVersion: --version prints the build's version and starts nothing
// (without it, main would refuse the missing environment and exit 2).
func TestVersion(t *testing.T) { buildinfotest.CheckVersion(t, "rampart-agent", main) }
