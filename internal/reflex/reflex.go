// Package reflex is Flick's event path: an event (an MQTT message, an HTTP
// request, a timer tick, an explicit invoke) is matched to the functions
// bound to it, queued under each function's bounded policy, handed to a
// fresh Wasm instance, and its result published, retried or dead-lettered.
// No orchestrator sits in this path; the engine answers locally.
//
// The engine owns deployment (validate and compile everything first, then
// one durable transaction, then swap the running set), the per-function
// queues and workers, the routing table, and what is observed of them:
// logs, lifecycle events and metrics.
package reflex

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/function"
	"github.com/flick-edge/flick/internal/wasm"
	"github.com/opencontainers/go-digest"
)

// Message is something the engine publishes (a result, a dead letter).
type Message struct {
	Topic           string
	Payload         []byte
	QoS             byte
	ContentType     string
	CorrelationData []byte
	UserProperties  map[string]string
}

// Publisher sends messages; the embedded broker implements it.
type Publisher interface {
	Publish(Message) error
}

// Blobs keeps module bytes by digest (the content store).
type Blobs interface {
	ReadBlob(digest.Digest) ([]byte, error)
	WriteBlob(digest.Digest, []byte) error
}

// Config wires the engine.
type Config struct {
	Wasm    *wasm.Engine
	Store   *function.Store
	Blobs   Blobs
	Publish Publisher
	Metrics *metrics.Set
	Logger  *slog.Logger
}

// Engine runs functions.
type Engine struct {
	cfg Config
	log *slog.Logger

	deployMu sync.Mutex // serialises Deploy/Remove
	mu       sync.RWMutex
	fns      map[string]*fnState
	routes   atomic.Pointer[[]route]
	http     atomic.Pointer[map[string]string] // path -> function

	seq    atomic.Uint64
	boot   string
	obs    *observer
	ctx    context.Context
	cancel context.CancelFunc
}

type route struct {
	filter string
	fn     string
}

// New returns an engine; Start loads what was deployed before.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{cfg: cfg, log: cfg.Logger, fns: map[string]*fnState{}, ctx: ctx, cancel: cancel,
		boot: strconv.FormatInt(time.Now().UnixNano()%1e9, 36)}
	e.obs = newObserver(cfg.Metrics)
	e.routes.Store(&[]route{})
	e.http.Store(&map[string]string{})
	return e
}

// Start compiles and starts every stored function. A function whose module
// no longer compiles is logged and skipped; the others run.
func (e *Engine) Start() error {
	specs, err := e.cfg.Store.List()
	if err != nil {
		return err
	}
	e.deployMu.Lock()
	defer e.deployMu.Unlock()
	for _, sp := range specs {
		if sp.Builtin != "" {
			e.swap(newFnState(e, sp, builtinEcho{}))
			continue
		}
		bin, err := e.cfg.Blobs.ReadBlob(sp.Module)
		if err != nil {
			e.log.Error("function module missing from the store; redeploy it", "function", sp.Name, "module", sp.Module, "err", err)
			continue
		}
		mod, err := e.cfg.Wasm.Compile(e.ctx, bin, wasm.Limits{MemoryPages: sp.MemoryPages(), PoolSlots: sp.Concurrency})
		if err != nil {
			e.log.Error("function no longer compiles; redeploy it", "function", sp.Name, "err", err)
			continue
		}
		e.swap(newFnState(e, sp, mod))
	}
	e.rebuildRoutes()
	e.log.Info("functions loaded", "count", len(specs))
	e.collectModules(specs)
	go debug.FreeOSMemory()
	return nil
}

// collectModules deletes stored modules no function refers to (left by
// replaced or removed functions, or by a deploy cut short).
func (e *Engine) collectModules(specs []function.Spec) {
	gc, ok := e.cfg.Blobs.(interface {
		Walk(func(digest.Digest, int64) error) error
		Delete(digest.Digest) error
	})
	if !ok {
		return
	}
	used := map[digest.Digest]bool{}
	for _, sp := range specs {
		used[sp.Module] = true
	}
	var stale []digest.Digest
	gc.Walk(func(d digest.Digest, _ int64) error {
		if !used[d] {
			stale = append(stale, d)
		}
		return nil
	})
	for _, d := range stale {
		if err := gc.Delete(d); err != nil {
			e.log.Warn("remove unused module", "module", d, "err", err)
		}
	}
}

// Deployment is a spec plus its module bytes.
type Deployment struct {
	Spec function.Spec
	Wasm []byte
}

// Deploy validates and compiles every deployment, then records them (and
// the removals) in one durable transaction, then switches the running set.
// If anything is refused, nothing changes.
func (e *Engine) Deploy(ctx context.Context, deps []Deployment, remove []string) ([]function.Spec, error) {
	e.deployMu.Lock()
	defer e.deployMu.Unlock()
	seen := map[string]bool{}
	specs := make([]function.Spec, len(deps))
	mods := make([]runner, len(deps))
	fail := func(err error) ([]function.Spec, error) {
		for _, m := range mods {
			if m != nil {
				m.Close()
			}
		}
		return nil, err
	}
	for i, d := range deps {
		sp := d.Spec
		if err := sp.Normalize(); err != nil {
			return fail(errdefs.NewInvalidArgument(err))
		}
		if seen[sp.Name] {
			return fail(errdefs.NewInvalidArgument(fmt.Errorf("function %s is given twice", sp.Name)))
		}
		seen[sp.Name] = true
		if sp.Builtin != "" {
			if len(d.Wasm) > 0 || sp.Image != "" {
				return fail(errdefs.NewInvalidArgument(fmt.Errorf("function %s: a builtin takes no module", sp.Name)))
			}
			sp.Deployed = time.Now().UTC()
			mods[i], specs[i] = builtinEcho{}, sp
			continue
		}
		if len(d.Wasm) == 0 {
			return fail(errdefs.NewInvalidArgument(fmt.Errorf("function %s: no module (give --wasm FILE or --image REF)", sp.Name)))
		}
		sp.Module = digest.FromBytes(d.Wasm)
		sp.ModuleSize = int64(len(d.Wasm))
		sp.Deployed = time.Now().UTC()
		m, err := e.cfg.Wasm.Compile(ctx, d.Wasm, wasm.Limits{MemoryPages: sp.MemoryPages(), PoolSlots: sp.Concurrency})
		if err != nil {
			var de *wasm.DeployError
			if errors.As(err, &de) {
				return fail(errdefs.NewInvalidArgument(fmt.Errorf("function %s: %w", sp.Name, err)))
			}
			return fail(err)
		}
		mods[i] = m
		specs[i] = sp
	}
	if err := e.checkConflicts(specs, remove); err != nil {
		return fail(err)
	}
	for i, d := range deps {
		if specs[i].Builtin != "" {
			continue
		}
		if err := e.cfg.Blobs.WriteBlob(specs[i].Module, d.Wasm); err != nil {
			return fail(fmt.Errorf("store module of %s: %w", specs[i].Name, err))
		}
	}
	if err := e.cfg.Store.Apply(specs, remove); err != nil {
		return fail(err)
	}
	for _, n := range remove {
		e.swapOut(n)
	}
	for i := range specs {
		e.swap(newFnState(e, specs[i], mods[i]))
		e.obs.emit(Event{Type: "deploy", Function: specs[i].Name, Detail: specs[i].Module.String()})
	}
	e.rebuildRoutes()
	// Compiling holds transient memory (tens of MiB for a Go module); give
	// it back now rather than whenever the runtime gets round to it.
	go debug.FreeOSMemory()
	return specs, nil
}

// checkConflicts refuses two functions on one HTTP path.
func (e *Engine) checkConflicts(specs []function.Spec, remove []string) error {
	owner := map[string]string{}
	e.mu.RLock()
	for n, st := range e.fns {
		for _, t := range st.spec.Triggers {
			if t.Kind == function.TriggerHTTP {
				owner[t.Path] = n
			}
		}
	}
	e.mu.RUnlock()
	gone := map[string]bool{}
	for _, n := range remove {
		gone[n] = true
	}
	for _, sp := range specs {
		gone[sp.Name] = true
	}
	for p, n := range owner {
		if gone[n] {
			delete(owner, p)
		}
	}
	for _, sp := range specs {
		for _, t := range sp.Triggers {
			if t.Kind != function.TriggerHTTP {
				continue
			}
			if o, ok := owner[t.Path]; ok && o != sp.Name {
				return errdefs.NewConflict(fmt.Errorf("function %s: http:%s is already bound to function %s", sp.Name, t.Path, o))
			}
			owner[t.Path] = sp.Name
		}
	}
	return nil
}

// Remove deletes functions; queued events are still run.
func (e *Engine) Remove(names ...string) error {
	e.deployMu.Lock()
	defer e.deployMu.Unlock()
	for _, n := range names {
		if _, err := e.cfg.Store.Get(n); err != nil {
			return err
		}
	}
	if err := e.cfg.Store.Apply(nil, names); err != nil {
		return err
	}
	for _, n := range names {
		e.swapOut(n)
		e.obs.emit(Event{Type: "remove", Function: n})
	}
	e.rebuildRoutes()
	return nil
}

func (e *Engine) swap(st *fnState) {
	e.mu.Lock()
	old := e.fns[st.spec.Name]
	e.fns[st.spec.Name] = st
	e.mu.Unlock()
	st.start()
	if old != nil {
		old.stop()
	}
}

func (e *Engine) swapOut(name string) {
	e.mu.Lock()
	old := e.fns[name]
	delete(e.fns, name)
	e.mu.Unlock()
	if old != nil {
		old.stop()
	}
}

func (e *Engine) rebuildRoutes() {
	var rs []route
	hp := map[string]string{}
	e.mu.RLock()
	for n, st := range e.fns {
		for _, t := range st.spec.Triggers {
			switch t.Kind {
			case function.TriggerMQTT:
				rs = append(rs, route{filter: t.Topic, fn: n})
			case function.TriggerHTTP:
				hp[t.Path] = n
			}
		}
	}
	e.mu.RUnlock()
	sort.Slice(rs, func(i, j int) bool { return rs[i].fn < rs[j].fn })
	e.routes.Store(&rs)
	e.http.Store(&hp)
}

func (e *Engine) state(name string) (*fnState, error) {
	e.mu.RLock()
	st := e.fns[name]
	e.mu.RUnlock()
	if st == nil {
		return nil, errdefs.NewNotFound(fmt.Errorf("no such function: %s (see flick fn ls)", name))
	}
	return st, nil
}

// Close stops every function after its queued events ran (or ctx ends).
func (e *Engine) Close(ctx context.Context) {
	e.mu.Lock()
	fns := e.fns
	e.fns = map[string]*fnState{}
	e.mu.Unlock()
	e.routes.Store(&[]route{})
	done := make(chan struct{})
	go func() {
		for _, st := range fns {
			st.stop()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		e.cancel() // kill instances still running
		<-done
	}
	e.cancel()
}

// Status is a function as `fn ls`/`fn inspect` show it.
type Status struct {
	function.Spec
	Queued   int    `json:"queued"`
	Running  int64  `json:"running"`
	Invoked  uint64 `json:"invocations"`
	Failed   uint64 `json:"errors"`
	Dropped  uint64 `json:"dropped"`
	Rejected uint64 `json:"rejected"`
}

// List returns every running function.
func (e *Engine) List() []Status {
	e.mu.RLock()
	out := make([]Status, 0, len(e.fns))
	for _, st := range e.fns {
		out = append(out, st.status())
	}
	e.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns one function's status.
func (e *Engine) Get(name string) (Status, error) {
	st, err := e.state(name)
	if err != nil {
		return Status{}, err
	}
	return st.status(), nil
}
