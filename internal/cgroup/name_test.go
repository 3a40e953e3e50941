package cgroup

import (
	"strings"
	"testing"
)

func TestValidNameLimits(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, strings.Repeat("a", 128): true, strings.Repeat("a", 129): false,
		"a_b.c-d": true, "-a": false, ".a": false, "a/b": false, "": false, "a b": false,
	} {
		if got := validName(s); got != want {
			t.Errorf("validName(%q) = %v, want %v", s, got, want)
		}
	}
}
