package sandbox

import "testing"

// BenchmarkDefaultFilter is what building Docker's default seccomp filter
// costs a container's init (every start builds it for its capabilities).
func BenchmarkDefaultFilter(b *testing.B) {
	caps, err := parseCaps(DefaultCapabilities())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := defaultFilter(caps); err != nil {
			b.Fatal(err)
		}
	}
}
