package network

import (
	"strings"
	"testing"
)

func TestNameLimits(t *testing.T) {
	for name, want := range map[string]bool{"flick0": true, strings.Repeat("b", 15): true, strings.Repeat("b", 16): false, "0br": false} {
		_, err := checkConfig(Config{Bridge: name, StateDir: t.TempDir()})
		if got := err == nil; got != want {
			t.Errorf("bridge %q: %v, want ok=%v", name, err, want)
		}
	}
	for id, want := range map[string]bool{"abc": true, strings.Repeat("f", 100): true, strings.Repeat("f", 101): false, ".x": false} {
		if got := checkID(id) == nil; got != want {
			t.Errorf("checkID(%d chars) ok=%v, want %v", len(id), got, want)
		}
	}
}
