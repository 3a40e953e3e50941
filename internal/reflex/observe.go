package reflex

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/flick-edge/flick/internal/wasm"
)

// Latency buckets from 10 µs to 10 s: the event path lives in microseconds.
var buckets = []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 10}

type fnMetrics struct {
	set                                *metrics.Set
	name                               string
	queueWait, instantiate, run, total *metrics.PrometheusHistogram
	queued                             *metrics.Counter // used as a gauge (Inc/Dec)
	dropped, rejected, retries         *metrics.Counter
	errors, timeouts, traps, outputs   *metrics.Counter
	deadLetters                        *metrics.Counter
}

func (m *fnMetrics) outcome(s string) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`flick_function_invocations_total{function=%q,outcome=%q}`, m.name, s))
}

// count records one failed attempt by kind.
func (m *fnMetrics) count(err error) {
	switch {
	case errors.Is(err, wasm.ErrTimeout):
		m.timeouts.Inc()
	case errors.Is(err, wasm.ErrTrap):
		m.traps.Inc()
	case errors.Is(err, wasm.ErrOutput):
		m.outputs.Inc()
	}
	m.errors.Inc()
}

// Event is a lifecycle event, as `flick events` streams them.
type Event struct {
	Time     time.Time     `json:"time"`
	Type     string        `json:"type"` // deploy, remove, done, error, timeout, trap, output-limit, drop, reject
	Function string        `json:"function"`
	EventID  string        `json:"eventId,omitempty"`
	Topic    string        `json:"topic,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Detail   string        `json:"detail,omitempty"`
}

// LogLine is one line of a function's log.
type LogLine struct {
	Time    time.Time `json:"time"`
	Stream  string    `json:"stream"` // stderr (the function's own) or flick (the engine's notes)
	EventID string    `json:"eventId,omitempty"`
	Text    string    `json:"text"`
}

type observer struct {
	set *metrics.Set

	mu   sync.Mutex
	fns  map[string]*fnMetrics
	logs map[string]*ring
	subs map[chan Event]struct{}
	nsub atomic.Int32
}

func newObserver(set *metrics.Set) *observer {
	return &observer{set: set, fns: map[string]*fnMetrics{}, logs: map[string]*ring{}, subs: map[chan Event]struct{}{}}
}

func (o *observer) forFunction(name string) *fnMetrics {
	o.mu.Lock()
	defer o.mu.Unlock()
	if m, ok := o.fns[name]; ok {
		return m
	}
	s := o.set
	l := fmt.Sprintf(`{function=%q}`, name)
	h := func(n string) *metrics.PrometheusHistogram {
		return s.GetOrCreatePrometheusHistogramExt("flick_function_"+n+"_seconds"+l, buckets)
	}
	c := func(n string) *metrics.Counter { return s.GetOrCreateCounter("flick_function_" + n + l) }
	m := &fnMetrics{set: s, name: name,
		queueWait: h("queue_wait"), instantiate: h("instantiate"), run: h("run"), total: h("total"),
		queued:  s.GetOrCreateCounter("flick_function_queued" + l),
		dropped: c("dropped_total"), rejected: c("rejected_total"), retries: c("retries_total"),
		errors: c("errors_total"), timeouts: c("timeouts_total"), traps: c("traps_total"), outputs: c("output_limit_total"),
		deadLetters: c("dead_letters_total"),
	}
	o.fns[name] = m
	return m
}

func (o *observer) logsFor(name string) *ring {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, ok := o.logs[name]
	if !ok {
		r = newRing(1000)
		o.logs[name] = r
	}
	return r
}

func (o *observer) emit(ev Event) {
	if o.nsub.Load() == 0 {
		return
	}
	ev.Time = time.Now().UTC()
	o.mu.Lock()
	for c := range o.subs {
		select {
		case c <- ev:
		default: // a slow reader loses events rather than slowing the event path
		}
	}
	o.mu.Unlock()
}

// Events subscribes to lifecycle events until cancel is called.
func (e *Engine) Events() (<-chan Event, func()) {
	c := make(chan Event, 1024)
	o := e.obs
	o.mu.Lock()
	o.subs[c] = struct{}{}
	o.nsub.Add(1)
	o.mu.Unlock()
	var once sync.Once
	return c, func() {
		once.Do(func() {
			o.mu.Lock()
			delete(o.subs, c)
			o.nsub.Add(-1)
			o.mu.Unlock()
		})
	}
}

// Logs returns the last n log lines of a function (also after removal,
// until the daemon restarts), and a channel of new lines if follow.
func (e *Engine) Logs(name string, n int, follow bool) ([]LogLine, <-chan LogLine, func()) {
	r := e.obs.logsFor(name)
	return r.tail(n, follow)
}

// ring keeps a function's last lines.
type ring struct {
	mu    sync.Mutex
	lines []LogLine
	next  int
	full  bool
	subs  map[chan LogLine]struct{}
}

func newRing(n int) *ring { return &ring{lines: make([]LogLine, n), subs: map[chan LogLine]struct{}{}} }

func (r *ring) add(id, stream, text string) {
	l := LogLine{Time: time.Now().UTC(), Stream: stream, EventID: id, Text: text}
	r.mu.Lock()
	r.lines[r.next] = l
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
	for c := range r.subs {
		select {
		case c <- l:
		default:
		}
	}
	r.mu.Unlock()
}

func (r *ring) addStderr(id string, b []byte) {
	if len(b) == 0 {
		return
	}
	for _, ln := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		if len(ln) > 1024 {
			ln = append(ln[:1024:1024], "…"...)
		}
		r.add(id, "stderr", string(ln))
	}
}

func (r *ring) tail(n int, follow bool) ([]LogLine, <-chan LogLine, func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []LogLine
	if r.full {
		all = append(all, r.lines[r.next:]...)
	}
	all = append(all, r.lines[:r.next]...)
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	if !follow {
		return all, nil, func() {}
	}
	c := make(chan LogLine, 256)
	r.subs[c] = struct{}{}
	var once sync.Once
	return all, c, func() {
		once.Do(func() {
			r.mu.Lock()
			delete(r.subs, c)
			r.mu.Unlock()
		})
	}
}
