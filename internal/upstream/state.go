package upstream

import (
	"context"
	"sync"
	"time"
)

// lifecycle is what the MQTT and NATS senders share: the State tracker, the
// background loop's context and its first-attempt and done signals, and,
// under mu (which each sender also uses for its own connection fields), why
// it is not connected and whether it was closed.
type lifecycle struct {
	tr *tracker

	mu      sync.Mutex
	connErr *Error // why we are not connected (last attempt or loss)
	closed  bool

	ctx       context.Context
	stop      context.CancelFunc
	first     chan struct{} // closed after the first connection attempt
	firstOnce sync.Once
	done      chan struct{} // closed when the loop returns
}

func (l *lifecycle) init(url string, o Options) {
	l.tr = newTracker(url, o)
	l.first, l.done = make(chan struct{}), make(chan struct{})
}

// start runs the sender's connection loop in the background.
func (l *lifecycle) start(loop func()) {
	l.ctx, l.stop = context.WithCancel(context.Background())
	go loop()
}

// firstDone marks the first attempt's outcome visible to Send (Dial waits
// for it).
func (l *lifecycle) firstDone() { l.firstOnce.Do(func() { close(l.first) }) }

func (l *lifecycle) firstAttempt() <-chan struct{} { return l.first }

// State is the connection state and the counters.
func (l *lifecycle) State() State { return l.tr.State() }

// NextConnect is closed when the next connection comes up.
func (l *lifecycle) NextConnect() <-chan struct{} { return l.tr.nextConnect() }

// Close stops the background connection; Send then fails (Retryable).
func (l *lifecycle) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.stop()
	<-l.done
	return nil
}

func (l *lifecycle) setConnErr(e *Error) {
	l.mu.Lock()
	l.connErr = e
	l.mu.Unlock()
}

// tracker holds a sender's State.
type tracker struct {
	mu     sync.Mutex
	st     State
	log    func(msg string, args ...any)
	debug  func(msg string, args ...any)
	failed string        // the last connection failure logged at warning level
	up     chan struct{} // closed, and replaced, at each connection
}

func newTracker(url string, o Options) *tracker {
	return &tracker{st: State{URL: url, Since: time.Now()}, log: o.Logger.Warn, debug: o.Logger.Debug, up: make(chan struct{})}
}

func (t *tracker) nextConnect() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.up
}

func (t *tracker) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st
}

func (t *tracker) setErr(e *Error) {
	t.st.LastError, t.st.LastErrorAt = e, time.Now()
}

func (t *tracker) connected() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.Connects > 0 {
		t.st.Reconnects++
	}
	t.failed = ""
	t.st.Connects++
	t.st.Connected, t.st.Since = true, time.Now()
	close(t.up)
	t.up = make(chan struct{})
}

func (t *tracker) disconnected(e *Error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.Connected {
		t.st.Connected, t.st.Since = false, time.Now()
	}
	if e != nil {
		t.setErr(e)
		t.log("upstream connection lost", "url", t.st.URL, "err", e)
	}
}

func (t *tracker) connectFailed(e *Error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st.ConnectFailures++
	t.setErr(e)
	// The same failure every few seconds while the uplink is down is
	// logged once at warning level.
	if msg := e.Error(); msg != t.failed {
		t.failed = msg
		t.log("upstream connection failed", "url", t.st.URL, "err", e)
	} else {
		t.debug("upstream connection failed", "url", t.st.URL, "err", e, "failures", t.st.ConnectFailures)
	}
}

// sent records the outcome of one Send.
func (t *tracker) sent(written, acked, dups int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st.Sent += uint64(written)
	t.st.Acked += uint64(acked)
	t.st.Duplicates += uint64(dups)
	if e, ok := err.(*Error); ok {
		if e.Permanent {
			t.st.Refused++
			t.log("upstream refused a message", "url", t.st.URL, "err", e)
		} else {
			t.st.Failed++
		}
		t.setErr(e)
	}
}
