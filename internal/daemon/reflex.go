package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/flick-edge/flick/internal/broker"
	"github.com/flick-edge/flick/internal/config"
	"github.com/flick-edge/flick/internal/content"
	"github.com/flick-edge/flick/internal/flickapi"
	"github.com/flick-edge/flick/internal/forward"
	"github.com/flick-edge/flick/internal/function"
	"github.com/flick-edge/flick/internal/pull"
	"github.com/flick-edge/flick/internal/reflex"
	"github.com/flick-edge/flick/internal/registry"
	"github.com/flick-edge/flick/internal/route"
	"github.com/flick-edge/flick/internal/upstream"
	"github.com/flick-edge/flick/internal/wasm"
)

// reflexSide is the event half of the daemon: broker, function engine,
// their API, the HTTP trigger and metrics listeners.
type reflexSide struct {
	wasm    *wasm.Engine
	store   *function.Store
	broker  *broker.Broker
	engine  *reflex.Engine
	api     *flickapi.Server
	routes  *route.Store
	fwd     *forward.Forwarder
	metrics *metrics.Set
	servers []*http.Server
	httpAt  string
	metAt   string
	log     *slog.Logger
}

// publisher adapts the broker to the engine.
type publisher struct{ b *broker.Broker }

func (p publisher) Publish(m reflex.Message) error {
	return p.b.Publish(broker.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, ContentType: m.ContentType,
		CorrelationData: m.CorrelationData, UserProperties: m.UserProperties})
}

func startReflex(cfg config.Daemon, reg *registry.Client, log *slog.Logger, puller *pull.Puller) (_ *reflexSide, err error) {
	r := &reflexSide{log: log, metrics: metrics.NewSet()}
	defer func() {
		if err != nil {
			r.close(context.Background())
		}
	}()
	if r.wasm, err = wasm.NewEngine(filepath.Join(cfg.DataRoot, "wasm-cache")); err != nil {
		return r, err
	}
	if r.store, err = function.OpenStore(filepath.Join(cfg.DataRoot, "functions.db")); err != nil {
		return r, err
	}
	// Modules live in their own content store, out of the image GC's sight.
	cs, err := content.Open(filepath.Join(cfg.DataRoot, "modules"))
	if err != nil {
		return r, err
	}
	maxPacket, err := cfg.MaxPacketBytes()
	if err != nil {
		return r, err
	}
	bc := broker.Config{Listen: cfg.MQTT.Listen, TLSListen: cfg.MQTT.TLSListen, Users: cfg.MQTT.Users,
		AllowAnonymous: cfg.MQTT.AllowAnonymous, MaxPacketSize: maxPacket, Logger: log.With("component", "mqtt")}
	if len(cfg.MQTT.TLSListen) > 0 {
		cert, err := tls.LoadX509KeyPair(cfg.MQTT.TLSCert, cfg.MQTT.TLSKey)
		if err != nil {
			return r, fmt.Errorf("mqtt tls: %w", err)
		}
		bc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if r.broker, err = broker.Start(bc); err != nil {
		return r, err
	}
	r.engine = reflex.New(reflex.Config{Wasm: r.wasm, Store: r.store, Blobs: cs, Publish: publisher{r.broker},
		Metrics: r.metrics, Logger: log.With("component", "reflex")})
	if err := r.engine.Start(); err != nil {
		return r, err
	}
	r.broker.SetHandler(func(in broker.Inbound) (func(context.Context) error, error) {
		wait, err := r.engine.Dispatch(reflex.Inbound{Source: "mqtt", Topic: in.Topic, Payload: in.Payload,
			ContentType: in.ContentType, ResponseTopic: in.ResponseTopic, CorrelationData: in.CorrelationData,
			Received: time.Now()}, in.QoS > 0)
		if errors.Is(err, reflex.ErrOverloaded) {
			err = fmt.Errorf("%w: %w", broker.ErrOverloaded, err)
		}
		return wait, err
	})
	r.brokerMetrics()
	pullMetrics(r.metrics, puller)
	if r.routes, err = route.OpenStore(filepath.Join(cfg.DataRoot, "routes.db")); err != nil {
		return r, err
	}
	hub := cfg.HubID
	if hub == "" {
		hub, _ = os.Hostname()
	}
	r.fwd = forward.New(forward.Config{Dir: filepath.Join(cfg.DataRoot, "outbox"), Hub: hub, Store: r.routes,
		Local: r.broker.Publish, Deliver: r.deliverInbound, Metrics: r.metrics, Logger: log.With("component", "upstream")})
	if err := r.fwd.Start(); err != nil {
		return r, err
	}
	r.broker.SetTap(r.fwd.Tap)
	r.api = flickapi.New(flickapi.Config{Engine: r.engine, Routes: r.fwd, Registry: reg, Info: r.info, Logger: log.With("component", "flickapi")})
	if cfg.HTTPListen != "" {
		if r.httpAt, err = r.serve(cfg.HTTPListen, r.api.Hooks(), "http triggers", "--http-listen"); err != nil {
			return r, err
		}
	}
	if cfg.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /metrics", r.serveMetrics)
		if r.metAt, err = r.serve(cfg.MetricsAddr, mux, "metrics", "--metrics-addr"); err != nil {
			return r, err
		}
	}
	log.Info("reflex ready", "mqtt", r.broker.Addrs(), "http", r.httpAt, "metrics", r.metAt, "functions", len(r.engine.List()))
	return r, nil
}

func (r *reflexSide) serve(addr string, h http.Handler, what, flag string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s listen %s: %w (choose another with %s, or \"\" to turn it off)", what, addr, err, flag)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelWarn)}
	r.servers = append(r.servers, s)
	go s.Serve(l)
	return l.Addr().String(), nil
}

func (r *reflexSide) info() flickapi.Info {
	b := r.broker
	return flickapi.Info{MQTT: b.Addrs(), HTTP: r.httpAt, Metrics: r.metAt, Functions: len(r.engine.List()),
		Broker: map[string]uint64{"received": b.Received.Load(), "refused": b.Refused.Load(), "published": b.Published.Load(), "denied": b.Denied.Load()}}
}

func (r *reflexSide) brokerMetrics() {
	b, s := r.broker, r.metrics
	counter := func(name string, f func() uint64) { s.NewGauge(name, func() float64 { return float64(f()) }) }
	counter("flick_mqtt_received_total", b.Received.Load)
	counter("flick_mqtt_refused_total", b.Refused.Load)
	counter("flick_mqtt_published_total", b.Published.Load)
	counter("flick_mqtt_denied_total", b.Denied.Load)
	stat := func(name string, f func(broker.Stats) int64) {
		s.NewGauge(name, func() float64 { return float64(f(b.Stats())) })
	}
	stat("flick_mqtt_clients", func(st broker.Stats) int64 { return st.Clients })
	stat("flick_mqtt_subscriptions", func(st broker.Stats) int64 { return st.Subscriptions })
	stat("flick_mqtt_retained", func(st broker.Stats) int64 { return st.Retained })
	stat("flick_mqtt_bytes_received_total", func(st broker.Stats) int64 { return st.BytesReceived })
	stat("flick_mqtt_bytes_sent_total", func(st broker.Stats) int64 { return st.BytesSent })
	stat("flick_mqtt_messages_received_total", func(st broker.Stats) int64 { return st.MessagesReceived })
	stat("flick_mqtt_messages_sent_total", func(st broker.Stats) int64 { return st.MessagesSent })
	stat("flick_mqtt_messages_dropped_total", func(st broker.Stats) int64 { return st.MessagesDropped })
	stat("flick_mqtt_inflight_dropped_total", func(st broker.Stats) int64 { return st.InflightDropped })
}

// pullMetrics exports the puller's totals: how much the hub downloads, and
// how much deltas saved.
func pullMetrics(s *metrics.Set, p *pull.Puller) {
	if p == nil {
		return
	}
	st := p.Stats()
	for name, v := range map[string]interface{ Load() int64 }{
		"flick_pull_total":                   &st.Pulls,
		"flick_pull_fetched_bytes_total":     &st.FetchedBytes,
		"flick_pull_delta_total":             &st.DeltaPulls,
		"flick_pull_delta_saved_bytes_total": &st.DeltaSaved,
		"flick_pull_delta_fallbacks_total":   &st.DeltaFallbacks,
	} {
		s.NewGauge(name, func() float64 { return float64(v.Load()) })
	}
}

func (r *reflexSide) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	r.metrics.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

var versioned = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^/v\d+\.\d+(/.*)$`) })

// mount routes /flick/v1/ and /metrics (with or without a Docker-style
// /vX.Y prefix) to the reflex side, the rest to api.
func (r *reflexSide) mount(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(flickapi.Prefix+"/", r.api)
	mux.Handle(flickapi.Prefix+"/system/", api) // the image store's own checks live beside the Docker API
	mux.HandleFunc("GET /metrics", r.serveMetrics)
	mux.Handle("/", api)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if m := versioned().FindStringSubmatch(req.URL.Path); m != nil && (strings.HasPrefix(m[1], flickapi.Prefix+"/") || m[1] == "/metrics") {
			req.URL.Path, req.URL.RawPath = m[1], ""
		}
		mux.ServeHTTP(w, req)
	})
}

// close stops intake first (listeners, then the broker: a QoS 1/2 sender
// whose event had not finished gets no acknowledgement and sends again to
// the next daemon), then lets queued events finish within ctx, then
// releases the engine's resources.
func (r *reflexSide) close(ctx context.Context) {
	for _, s := range r.servers {
		s.Shutdown(ctx)
	}
	if r.broker != nil {
		r.broker.Close()
	}
	if r.fwd != nil {
		r.fwd.Close() // the outboxes keep what was not sent
	}
	if r.routes != nil {
		r.routes.Close()
	}
	if r.engine != nil {
		r.engine.Close(ctx)
	}
	if r.store != nil {
		r.store.Close()
	}
	if r.wasm != nil {
		r.wasm.Close()
	}
}

// deliverInbound hands a message an inbound route received from upstream
// (a fleet command) to the hub: it is published on the local broker, for
// devices and local subscribers, and dispatched to the functions bound to
// the topic, as a device's message would be (Flick's own publishes do not
// trigger functions). It returns once the functions are done, so the
// upstream acknowledgement means the command was handled.
func (r *reflexSide) deliverInbound(ctx context.Context, routeName string, d upstream.Delivery) error {
	topic := d.Local
	props := map[string]string{"flick-route": routeName, "flick-upstream-topic": d.Topic}
	for k, v := range d.Attrs {
		props[k] = v
	}
	if err := r.broker.Publish(broker.Message{Topic: topic, Payload: d.Payload, QoS: 1, ContentType: d.ContentType, UserProperties: props}); err != nil {
		return fmt.Errorf("publish on the hub: %w", err)
	}
	wait, err := r.engine.Dispatch(reflex.Inbound{Source: "upstream", Topic: topic, Payload: d.Payload, ContentType: d.ContentType, Received: time.Now()}, true)
	if wait != nil {
		if werr := wait(ctx); werr != nil {
			return werr
		}
	}
	return err
}
