package daemon

import (
	"context"
	"log/slog"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

var sink [][]byte

func released() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Quiet after start-up: one trim. Then a burst of allocation and quiet:
// one more, and the freed heap is back with the OS. No burst: no trim.
func TestTrimWhenQuiet(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var trims atomic.Int32
	go trimWhenQuiet(ctx, 20*time.Millisecond, func() { trim(slog.Default()); trims.Add(1) })

	time.Sleep(200 * time.Millisecond)
	if n := trims.Load(); n != 1 {
		t.Fatalf("%d trims after start-up, want 1", n)
	}
	// 16 MiB allocated and dropped: garbage the heap keeps until a trim.
	for range 64 {
		sink = append(sink, make([]byte, 256<<10))
	}
	sink = nil
	before := released()
	deadline := time.Now().Add(10 * time.Second)
	for trims.Load() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("no trim after a 16 MiB burst and quiet")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if after := released(); after < before+8<<20 {
		t.Fatalf("released heap went from %d to %d bytes; want 8 MiB more", before, after)
	}
	// Quiet again, no new burst: no second trim.
	n := trims.Load()
	time.Sleep(200 * time.Millisecond)
	if trims.Load() != n {
		t.Fatal("trimmed again without a burst")
	}
}
