package sandbox

import (
	"testing"

	"github.com/flick-edge/flick/internal/capability"
)

// BenchmarkDefaultFilter is what building Docker's default seccomp filter
// costs a container's init (every start builds it for its capabilities).
func BenchmarkDefaultFilter(b *testing.B) {
	caps, err := capability.Parse(capability.Default())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := defaultFilter(caps); err != nil {
			b.Fatal(err)
		}
	}
}
