//go:build !linux

package testregistry

import "os/exec"

func setParentDeathSignal(*exec.Cmd) {}
