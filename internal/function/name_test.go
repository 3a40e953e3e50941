package function

import (
	"strings"
	"testing"
)

func TestValidNameLimits(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, strings.Repeat("a", 63): true, strings.Repeat("a", 64): false,
		"up-1.x_y": true, "A": false, "-a": false, "": false,
	} {
		if got := ValidName(s); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", s, got, want)
		}
	}
}
