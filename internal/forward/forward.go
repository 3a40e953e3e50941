// Package forward moves local messages upstream along routes: the broker's
// tap appends each message a route matches to that route's durable outbox
// (acknowledged to the device only once it is on disk), and one loop per
// route sends the outbox in order to its upstream (MQTT or NATS), deleting
// messages only when the upstream has acknowledged them. Refused messages
// are dead-lettered locally and not retried forever; a lost uplink is
// retried with capped, jittered back-off and resumes by itself.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/flick-edge/flick/internal/broker"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/outbox"
	"github.com/flick-edge/flick/internal/route"
	"github.com/flick-edge/flick/internal/upstream"
)

// DeadLetterPrefix is where refused messages go, per route, on the local
// broker.
const DeadLetterPrefix = "flick/dead-letter/"

// Config wires the forwarder.
type Config struct {
	Dir   string // data-root/outbox: one directory per route
	Hub   string // this hub's id ({hub} in destinations)
	Store *route.Store
	Local func(broker.Message) error // publish on the local broker (dead letters)
	// Deliver hands a message an inbound route received from upstream to
	// the hub (its local broker and the functions bound to d.Local); the
	// message is acknowledged upstream once it returns nil.
	Deliver func(ctx context.Context, route string, d upstream.Delivery) error
	Metrics *metrics.Set
	Logger  *slog.Logger
	// MinBackoff and MaxBackoff bound reconnect and resend back-off.
	MinBackoff, MaxBackoff time.Duration
}

// Forwarder runs every route.
type Forwarder struct {
	cfg    Config
	log    *slog.Logger
	mu     sync.Mutex
	routes map[string]*fwd
	snap   atomic.Pointer[[]*fwd]
}

type fwd struct {
	spec   route.Spec
	ob     *outbox.Outbox
	snd    upstream.Sender
	rcv    upstream.Receiver // an inbound route's subscription (nothing else is set but spec and the counters)
	dest   upstream.Destination
	cancel context.CancelFunc
	done   chan struct{}

	sent, failed, refusedFull atomic.Uint64
	lastErr                   atomic.Pointer[string]
}

// New returns a forwarder; Start loads the stored routes.
func New(cfg Config) *Forwarder {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	f := &Forwarder{cfg: cfg, log: cfg.Logger, routes: map[string]*fwd{}}
	f.snap.Store(&[]*fwd{})
	return f
}

// Start opens every stored route's outbox and starts sending.
func (f *Forwarder) Start() error {
	specs, err := f.cfg.Store.List()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, sp := range specs {
		r, err := f.open(sp)
		if err != nil {
			f.log.Error("route cannot start", "route", sp.Name, "err", err)
			continue
		}
		f.routes[sp.Name] = r
	}
	f.publishSnap()
	return nil
}

func (f *Forwarder) publishSnap() {
	list := make([]*fwd, 0, len(f.routes))
	for _, r := range f.routes {
		list = append(list, r)
	}
	f.snap.Store(&list)
}

func (f *Forwarder) destination(sp route.Spec) (upstream.Destination, error) {
	d, err := upstream.ParseDestination(sp.To)
	if err != nil {
		return d, errdefs.NewInvalidArgument(fmt.Errorf("route %s: %w", sp.Name, err))
	}
	d.Username, d.Password, d.CAFile, d.CertFile, d.KeyFile, d.CredsFile = sp.Username, sp.Password, sp.CAFile, sp.CertFile, sp.KeyFile, sp.Creds
	if strings.HasPrefix(sp.To, "mqtt") {
		d.QoS = sp.QoS
		if d.ClientID == "" {
			d.ClientID = "flick-" + f.cfg.Hub + "-" + sp.Name
		}
	}
	return d, nil
}

// openInbound subscribes upstream for an inbound route.
func (f *Forwarder) openInbound(sp route.Spec) (*fwd, error) {
	src := upstream.Source{URL: sp.From[0], Username: sp.Username, Password: sp.Password, CAFile: sp.CAFile,
		CertFile: sp.CertFile, KeyFile: sp.KeyFile, ClientID: "flick-" + f.cfg.Hub + "-" + sp.Name, Local: sp.To}
	r := &fwd{spec: sp}
	log := f.log.With("route", sp.Name)
	deliver := func(ctx context.Context, d upstream.Delivery) error {
		err := errors.New("no local delivery configured")
		if f.cfg.Deliver != nil {
			err = f.cfg.Deliver(ctx, sp.Name, d)
		}
		if err != nil {
			r.failed.Add(1)
			msg := err.Error()
			r.lastErr.Store(&msg)
			log.Warn("a message from upstream could not be delivered on the hub: dead-lettered locally", "topic", d.Topic, "local", d.Local, "err", err)
			f.deadLetter(sp.Name, d.Payload, map[string]string{"flick-topic": d.Topic, "flick-error": err.Error()})
			return err
		}
		r.sent.Add(1)
		return nil
	}
	rcv, err := upstream.Receive(src, f.cfg.Hub, upstream.Options{MinBackoff: f.cfg.MinBackoff, MaxBackoff: f.cfg.MaxBackoff, Logger: log}, deliver)
	if err != nil {
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("route %s: %w", sp.Name, err))
	}
	r.rcv = rcv
	f.metrics(r)
	return r, nil
}

// deadLetter publishes what a route could not deliver on the hub, at
// flick/dead-letter/ROUTE.
func (f *Forwarder) deadLetter(route string, payload []byte, props map[string]string) {
	if f.cfg.Local != nil {
		f.cfg.Local(broker.Message{Topic: DeadLetterPrefix + route, Payload: payload, QoS: 1, UserProperties: props})
	}
}

func (f *Forwarder) open(sp route.Spec) (*fwd, error) {
	if sp.Inbound() {
		return f.openInbound(sp)
	}
	d, err := f.destination(sp)
	if err != nil {
		return nil, err
	}
	policy := outbox.Policy(sp.WhenFull)
	ob, rep, err := outbox.Open(outbox.Config{Dir: filepath.Join(f.cfg.Dir, sp.Name), MaxBytes: sp.MaxBytes, Policy: policy, TTL: sp.TTL})
	if err != nil {
		return nil, fmt.Errorf("route %s: outbox: %w", sp.Name, err)
	}
	if rep.Truncated() {
		f.log.Warn("outbox had a torn or corrupt tail after a crash: cut to the last good record", "route", sp.Name, "report", rep.String())
	} else if rep.Records > 0 {
		f.log.Info("outbox recovered unsent messages", "route", sp.Name, "messages", rep.Records)
	}
	ctx, cancel := context.WithCancel(context.Background())
	snd, err := upstream.Dial(ctx, d, f.cfg.Hub, upstream.Options{MinBackoff: f.cfg.MinBackoff, MaxBackoff: f.cfg.MaxBackoff, Logger: f.log.With("route", sp.Name)})
	if err != nil {
		cancel()
		ob.Close()
		return nil, fmt.Errorf("route %s: %w", sp.Name, err)
	}
	r := &fwd{spec: sp, ob: ob, snd: snd, dest: d, cancel: cancel, done: make(chan struct{})}
	f.metrics(r)
	go f.loop(ctx, r)
	return r, nil
}

func (f *Forwarder) metrics(r *fwd) {
	s := f.cfg.Metrics
	if s == nil {
		return
	}
	l := fmt.Sprintf(`{route=%q}`, r.spec.Name)
	g := func(name string, fn func() float64) { s.GetOrCreateGauge("flick_route_"+name+l, fn) }
	g("connected", func() float64 {
		if r.state().Connected {
			return 1
		}
		return 0
	})
	g("sent_total", func() float64 { return float64(r.sent.Load()) })
	g("failed_total", func() float64 { return float64(r.failed.Load()) })
	if r.rcv != nil {
		return
	}
	g("outbox_messages", func() float64 { return float64(r.ob.Stats().Messages) })
	g("outbox_bytes", func() float64 { return float64(r.ob.Stats().Bytes) })
	g("oldest_age_seconds", func() float64 { return r.ob.Stats().OldestAge.Seconds() })
	g("expired_total", func() float64 { return float64(r.ob.Stats().Expired) })
	g("dropped_total", func() float64 { return float64(r.ob.Stats().Dropped) })
	g("refused_total", func() float64 { return float64(r.ob.Stats().Refused) })
}

func (r *fwd) stop() {
	if r.rcv != nil {
		r.rcv.Close()
		return
	}
	r.cancel()
	<-r.done
	r.snd.Close()
	r.ob.Close()
}

func (r *fwd) state() upstream.State {
	if r.rcv != nil {
		return r.rcv.State()
	}
	return r.snd.State()
}

// loop sends the outbox in order, forever.
func (f *Forwarder) loop(ctx context.Context, r *fwd) {
	defer close(r.done)
	backoff := f.cfg.MinBackoff
	for {
		if err := r.ob.Wait(ctx); err != nil {
			return
		}
		if r.spec.Linger > 0 && r.ob.Stats().Messages < r.spec.Batch {
			select {
			case <-ctx.Done():
				return
			case <-time.After(r.spec.Linger):
			}
		}
		batch := r.ob.Next(r.spec.Batch)
		if len(batch) == 0 {
			continue
		}
		msgs := make([]upstream.Message, len(batch))
		for i, m := range batch {
			msgs[i] = upstream.Message{ID: m.ID, Topic: m.Topic, Payload: m.Payload, Attrs: m.Attrs}
		}
		up := r.snd.NextConnect()
		acked, err := r.snd.Send(ctx, msgs)
		if acked > 0 {
			ids := make([]string, acked)
			for i := range acked {
				ids[i] = batch[i].ID
			}
			if aerr := r.ob.Ack(ids...); aerr != nil {
				f.log.Error("outbox ack", "route", r.spec.Name, "err", aerr)
			}
			r.sent.Add(uint64(acked))
			backoff = f.cfg.MinBackoff
		}
		if err == nil {
			continue
		}
		msg := err.Error()
		r.lastErr.Store(&msg)
		if errors.Is(err, upstream.ErrPermanent) && acked < len(batch) {
			// The upstream refused this message: it will never take it.
			// Dead-letter it locally, drop it, and go on with the next.
			bad := batch[acked]
			r.failed.Add(1)
			f.log.Warn("upstream refused a message: dead-lettered locally", "route", r.spec.Name, "id", bad.ID, "topic", bad.Topic, "err", err)
			f.deadLetter(r.spec.Name, bad.Payload, map[string]string{"flick-msg-id": bad.ID, "flick-topic": bad.Topic, "flick-error": err.Error()})
			r.ob.Ack(bad.ID)
			continue
		}
		// Uplink trouble: wait, with jitter, and try again; at once when
		// the sender (which reconnects by itself) is back.
		d := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-up:
			t.Stop()
			backoff = f.cfg.MinBackoff
			continue
		case <-t.C:
		}
		backoff = min(backoff*2, f.cfg.MaxBackoff)
	}
}

// Tap appends a message to the outbox of every route that matches it. It
// returns once the message has joined each outbox's group commit, with the
// commits to wait for before the message counts as accepted; an outbox full
// under the refuse policy is an error wrapping broker.ErrOverloaded.
func (f *Forwarder) Tap(m broker.Message) ([]broker.Hold, error) {
	if strings.HasPrefix(m.Topic, DeadLetterPrefix) {
		return nil, nil // never forward what a route refused back into a route
	}
	var firstErr error
	var holds []broker.Hold
	for _, r := range *f.snap.Load() {
		if !r.spec.Matches(m.Topic) {
			continue
		}
		om := outbox.Message{Topic: m.Topic, Payload: m.Payload, Priority: r.spec.Priority, Created: time.Now()}
		if len(m.UserProperties) > 0 || m.ContentType != "" {
			om.Attrs = map[string]string{}
			for k, v := range m.UserProperties {
				om.Attrs[k] = v
			}
			if m.ContentType != "" {
				om.Attrs["content-type"] = m.ContentType
			}
		}
		_, c, err := r.ob.AppendAsync(om)
		if err == nil {
			holds = append(holds, c)
		} else {
			if errors.Is(err, outbox.ErrFull) {
				r.refusedFull.Add(1)
				err = fmt.Errorf("route %s: %w: %w", r.spec.Name, broker.ErrOverloaded, err)
			}
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return holds, firstErr
}

// Apply adds or replaces routes and removes others, durably, then switches
// the running set. A replaced route keeps its outbox (its directory is
// named after the route).
func (f *Forwarder) Apply(put []route.Spec, remove []string) ([]route.Spec, error) {
	for i := range put {
		if err := put[i].Normalize(); err != nil {
			return nil, errdefs.NewInvalidArgument(err)
		}
		if !put[i].Inbound() {
			if _, err := f.destination(put[i]); err != nil {
				return nil, err
			}
		}
		if put[i].Created.IsZero() {
			put[i].Created = time.Now().UTC()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.cfg.Store.Apply(put, remove); err != nil {
		return nil, err
	}
	for _, n := range remove {
		if r := f.routes[n]; r != nil {
			r.stop()
			delete(f.routes, n)
		}
	}
	var errs []error
	for _, sp := range put {
		if old := f.routes[sp.Name]; old != nil {
			old.stop()
			delete(f.routes, sp.Name)
		}
		r, err := f.open(sp)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f.routes[sp.Name] = r
	}
	f.publishSnap()
	return put, errors.Join(errs...)
}

// Status is a route as `flick route ls` shows it.
type Status struct {
	route.Spec
	Connected   bool          `json:"connected"`
	LastError   string        `json:"lastError,omitempty"`
	Queued      int           `json:"queued"`
	QueuedBytes int64         `json:"queuedBytes"`
	OldestAge   time.Duration `json:"oldestAge"`
	Sent        uint64        `json:"sent"`
	Failed      uint64        `json:"failed"`
	Expired     uint64        `json:"expired"`
	Dropped     uint64        `json:"dropped"`
	Refused     uint64        `json:"refused"`
}

// List reports every running route.
func (f *Forwarder) List() []Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Status
	for _, r := range f.routes {
		s := Status{Spec: r.spec, Connected: r.state().Connected, Sent: r.sent.Load(), Failed: r.failed.Load()}
		if r.ob != nil {
			st := r.ob.Stats()
			s.Queued, s.QueuedBytes, s.OldestAge, s.Expired, s.Dropped, s.Refused = st.Messages, st.Bytes, st.OldestAge, st.Expired, st.Dropped, st.Refused
		}
		s.Password = ""
		if e := r.lastErr.Load(); e != nil {
			s.LastError = *e
		}
		out = append(out, s)
	}
	sortStatus(out)
	return out
}

// Close stops every route; the outboxes keep what was not sent.
func (f *Forwarder) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for n, r := range f.routes {
		r.stop()
		delete(f.routes, n)
	}
	f.publishSnap()
}
