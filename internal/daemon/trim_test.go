package daemon

import (
	"log/slog"
	"runtime/metrics"
	"testing"
)

var sink [][]byte

func released() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// The decisions, period by period: quiet after start-up trims once; a
// burst does not trim while it goes on, then quiet after it trims once;
// quiet without a new burst never trims again; small steady work (below
// trimBurst since the last trim) never trims.
func TestTrimmer(t *testing.T) {
	const MiB = 1 << 20
	tr := newTrimmer(10 * MiB)
	var counter uint64 = 10 * MiB
	step := func(alloc uint64) bool {
		counter += alloc
		if tr.due(counter) {
			tr.trimmed(counter)
			return true
		}
		return false
	}
	for i, c := range []struct {
		alloc uint64
		trim  bool
		what  string
	}{
		{1 * MiB, false, "start-up still busy"},
		{0, true, "quiet after start-up: the start-up trim"},
		{0, false, "quiet again, no burst"},
		{3 * MiB, false, "a burst"},
		{3 * MiB, false, "the burst goes on"},
		{100 << 10, true, "quiet after 6 MiB: trim"},
		{0, false, "quiet, nothing new"},
		{200 << 10, false, "a little work, quiet"},
		{1 * MiB, false, "some work"},
		{0, false, "quiet, but only 1.2 MiB since the last trim"},
		{5 * MiB, false, "a burst"},
		{0, true, "quiet: trim"},
	} {
		if got := step(c.alloc); got != c.trim {
			t.Fatalf("period %d (%s): trim %v, want %v", i, c.what, got, c.trim)
		}
	}
}

// trim gives the freed heap back to the OS at once.
func TestTrimReleasesHeap(t *testing.T) {
	// 16 MiB allocated and dropped: garbage the heap keeps until a trim.
	for range 64 {
		sink = append(sink, make([]byte, 256<<10))
	}
	sink = nil
	before := released()
	trim(slog.Default())
	if after := released(); after < before+8<<20 {
		t.Fatalf("released heap went from %d to %d bytes; want 8 MiB more", before, after)
	}
}
