package main

import (
	"testing"

	"github.com/rampart-fw/rampart/internal/buildinfo/buildinfotest"
)

// TestVersion: --version prints the build's version and serves nothing.
func TestVersion(t *testing.T) { buildinfotest.CheckVersion(t, "routeros-sim", main) }
