package cgroup

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// On this (v1 or hybrid) host: every hierarchy this process is in, with
// the memory one among them, and each Dir an existing directory that lists
// this process.
func TestOwnHierarchies(t *testing.T) {
	if Unified() {
		t.Skip("cgroup v2 only: no v1 hierarchies")
	}
	hs, err := OwnHierarchies()
	if err != nil {
		t.Fatal(err)
	}
	var memory bool
	for _, h := range hs {
		if filepath.Base(h.Mountpoint) == "memory" {
			memory = true
		}
		procs, err := os.ReadFile(filepath.Join(h.Dir, "cgroup.procs"))
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		if !strings.Contains("\n"+string(procs), "\n"+strconv.Itoa(os.Getpid())+"\n") {
			t.Fatalf("%+v: this process (%d) is not in its cgroup.procs", h, os.Getpid())
		}
	}
	if !memory {
		t.Fatalf("no memory hierarchy among %+v", hs)
	}
}
