package daemon

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/flick-edge/flick/internal/resident"
)

// Trimming. Go returns freed heap pages to the OS in the background,
// slowly, and keeps what it expects to reuse: after a burst of work (a
// pull, a round of container starts) the daemon sat on about 2 MiB more
// resident memory than its live heap needs, for minutes. And start-up
// leaves most of the 18 MB binary mapped (every package's initialisation
// runs, and each fault maps 64 KiB around it), 14.7 MiB of which serving
// requests uses about 4. On a gateway with 512 MiB that is the apps'
// memory. So once the daemon goes quiet after start-up or after such a
// burst, it collects and gives the free heap back, and drops the mappings
// of its code (resident.UnmapCode): what the next requests run faults back
// in from the page cache.
const (
	trimEvery = 2 * time.Second
	trimQuiet = 256 << 10 // allocated in one period: below this, quiet
	trimBurst = 4 << 20   // allocated since the last trim: above this, worth one
)

// trim gives the free heap back (a collection and a scavenge of about a
// millisecond on this heap) and drops the mappings of the daemon's code.
func trim(log *slog.Logger) {
	debug.FreeOSMemory()
	if _, err := resident.UnmapCode(); err != nil {
		log.Debug("trim", "err", err)
	}
}

// trimWhenQuiet calls trim when the daemon has gone quiet (trimmer.due)
// and returns when ctx ends.
func trimWhenQuiet(ctx context.Context, every time.Duration, trim func()) {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocs := func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
	tr := newTrimmer(allocs())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if tr.due(allocs()) {
			trim()
			tr.trimmed(allocs())
		}
	}
}

// trimmer decides, from the heap's allocation counter read once a period,
// when a trim is worth it: in the last period the daemon allocated less
// than trimQuiet, after allocating more than trimBurst since the last trim
// or, the first time, since start-up.
type trimmer struct {
	last, since uint64 // the counter at the last period, at the last trim
	started     bool   // the start-up trim is done
}

func newTrimmer(allocs uint64) *trimmer { return &trimmer{last: allocs, since: allocs} }

// due takes the counter at the end of a period.
func (t *trimmer) due(allocs uint64) bool {
	quiet := allocs-t.last < trimQuiet
	t.last = allocs
	return quiet && (!t.started || allocs-t.since > trimBurst)
}

// trimmed records a trim, with the counter after it.
func (t *trimmer) trimmed(allocs uint64) { t.since, t.started = allocs, true }
