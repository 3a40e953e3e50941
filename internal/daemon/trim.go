package daemon

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Heap trimming. Go returns freed heap pages to the OS in the background,
// slowly, and keeps what it expects to reuse: after a burst of work (a
// pull, a round of container starts) the daemon sat on about 2 MiB more
// resident memory than its live heap needs, for minutes. On a gateway
// with 512 MiB that is the apps' memory. So once the daemon goes quiet
// after such a burst, it collects and gives the free pages back at once.
const (
	trimEvery = 2 * time.Second
	trimQuiet = 256 << 10 // allocated in one period: below this, quiet
	trimBurst = 4 << 20   // allocated since the last trim: above this, worth one
)

// trimWhenQuiet runs debug.FreeOSMemory (a collection and a scavenge of
// about a millisecond on this heap) when, in the last period, the daemon
// allocated less than trimQuiet after allocating more than trimBurst since
// the last trim. It returns when ctx ends.
func trimWhenQuiet(ctx context.Context, every time.Duration, trimmed func()) {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocs := func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
	last := allocs()
	since := last
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := allocs()
		if now-last < trimQuiet && now-since > trimBurst {
			debug.FreeOSMemory()
			since = allocs()
			if trimmed != nil {
				trimmed()
			}
		}
		last = now
	}
}
