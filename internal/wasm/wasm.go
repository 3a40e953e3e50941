// Package wasm runs WebAssembly functions: one fresh, sandboxed instance per
// event. It owns the wazero runtime, the on-disk compilation cache, the
// pooled linear-memory allocator and the sandbox limits (memory pages,
// wall-clock deadline, output caps). It knows nothing of MQTT or bindings.
//
// The guest contract is WASI preview 1 "command" modules: the event payload
// arrives on stdin, metadata in the environment, the result is what the
// module writes to stdout, its log what it writes to stderr, and a non-zero
// exit status or a trap is an error. Nothing else is provided: no
// filesystem, no sockets, no host functions beyond wasi_snapshot_preview1.
package wasm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// WASIModule is the only import namespace a function may use.
const WASIModule = wasi_snapshot_preview1.ModuleName

// PageSize is the size of one Wasm linear-memory page.
const PageSize = 64 << 10

// Engine compiles modules and caches compiled code on disk.
type Engine struct {
	cache wazero.CompilationCache

	compileMu sync.Mutex // wazero's cache needs compiles of one module serialised
	wasiNames map[string]bool
}

// NewEngine returns an engine whose compiled code is cached under cacheDir
// (keyed by module digest and wazero version, so an upgrade recompiles).
// An empty cacheDir keeps the cache in memory.
func NewEngine(cacheDir string) (*Engine, error) {
	var cache wazero.CompilationCache
	if cacheDir != "" {
		if err := os.MkdirAll(cacheDir, 0o700); err != nil {
			return nil, err
		}
		c, err := wazero.NewCompilationCacheWithDir(cacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm compilation cache %s: %w", cacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	e := &Engine{cache: cache, wasiNames: map[string]bool{}}
	// Learn which WASI functions this wazero provides, to refuse a module
	// that imports anything else at deploy time rather than on an event.
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		return nil, err
	}
	host := r.Module(WASIModule)
	if host == nil {
		return nil, errors.New("wasi host module missing")
	}
	for name := range host.ExportedFunctionDefinitions() {
		e.wasiNames[name] = true
	}
	return e, nil
}

// Close releases the compilation cache.
func (e *Engine) Close() error { return e.cache.Close(context.Background()) }

// Limits is the sandbox of one function.
type Limits struct {
	MemoryPages uint32 // linear-memory cap in 64 KiB pages (default 256 = 16 MiB)
	PoolSlots   int    // idle memory slots kept for reuse (default 8)
}

// Module is a compiled, validated function module, ready to instantiate.
type Module struct {
	rt     wazero.Runtime
	cm     wazero.CompiledModule
	pool   *slotPool
	limits Limits
	once   sync.Once
}

// DeployError says why a module was refused at deploy time.
type DeployError struct{ Reason string }

func (e *DeployError) Error() string { return e.Reason }

// Compile validates and compiles binary for the given limits. It refuses
// what is not Wasm, modules that import anything but WASI preview 1, that
// import memories, tables or globals, that are not commands (no _start), or
// whose initial memory exceeds the cap.
func (e *Engine) Compile(ctx context.Context, binary []byte, lim Limits) (*Module, error) {
	if lim.MemoryPages == 0 {
		lim.MemoryPages = 256
	}
	if lim.PoolSlots == 0 {
		lim.PoolSlots = 8
	}
	if len(binary) < 8 || !bytes.Equal(binary[:4], []byte("\x00asm")) {
		return nil, &DeployError{"not a WebAssembly module (missing \\0asm magic): build with a wasm32-wasi/wasip1 target"}
	}
	// NewRuntimeConfig compiles to native code on amd64 and arm64 and
	// interprets elsewhere (armv7 gateways).
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(e.cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(lim.MemoryPages)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	e.compileMu.Lock()
	cm, err := rt.CompileModule(ctx, binary)
	e.compileMu.Unlock()
	if err != nil {
		rt.Close(ctx)
		if strings.Contains(err.Error(), "over limit") {
			return nil, &DeployError{fmt.Sprintf("module needs more memory at start than the function's cap of %d KiB (%v): raise --memory", lim.MemoryPages*64, err)}
		}
		return nil, &DeployError{fmt.Sprintf("invalid WebAssembly module: %v", err)}
	}
	if err := e.validate(cm, lim); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return &Module{rt: rt, cm: cm, pool: newSlotPool(uint64(lim.MemoryPages)*PageSize, lim.PoolSlots), limits: lim}, nil
}

func (e *Engine) validate(cm wazero.CompiledModule, lim Limits) error {
	var bad []string
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != WASIModule || !e.wasiNames[name] {
			bad = append(bad, mod+"."+name)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return &DeployError{fmt.Sprintf("module imports functions Flick does not provide: %v (only %s is available; no host sockets, filesystem or custom imports)", bad, WASIModule)}
	}
	if n := len(cm.ImportedMemories()); n > 0 {
		return &DeployError{"module imports a memory: functions must define their own (build as a WASI command)"}
	}
	if _, ok := cm.ExportedFunctions()["_start"]; !ok {
		return &DeployError{"module exports no _start: build it as a WASI command (a main function), not a library/reactor"}
	}
	for _, m := range cm.ExportedMemories() {
		if m.Min() > lim.MemoryPages {
			return &DeployError{fmt.Sprintf("module needs %d KiB of memory at start, over the function's cap of %d KiB: raise --memory", m.Min()*64, lim.MemoryPages*64)}
		}
	}
	return nil
}

// Close releases the module's compiled code and memory pool.
func (m *Module) Close() {
	m.once.Do(func() {
		ctx := context.Background()
		m.rt.Close(ctx)
		m.pool.close()
	})
}

// Invocation is one event handed to a fresh instance.
type Invocation struct {
	Stdin     []byte
	Env       []string // KEY=VALUE
	Args      []string // argv[1:]; argv[0] is the function name
	Name      string
	Timeout   time.Duration // wall-clock deadline (0: none beyond ctx)
	MaxStdout int           // bytes; past it the instance is stopped (default 1 MiB)
	MaxStderr int           // bytes kept of the log; the rest is dropped (default 64 KiB)
}

// Result is what one instance produced.
type Result struct {
	Stdout      []byte
	Stderr      []byte
	ExitCode    uint32
	Instantiate time.Duration // fresh instance, WASI set up, memory mapped
	Run         time.Duration // _start to exit
}

// Failure kinds.
var (
	ErrTimeout = errors.New("deadline exceeded: the function ran past its --timeout and was stopped")
	ErrOutput  = errors.New("output limit exceeded: the function wrote more than its stdout cap and was stopped")
	ErrExit    = errors.New("non-zero exit status")
	ErrTrap    = errors.New("trap")
)

// RunError is a failed invocation; errors.Is matches one of the kinds above.
type RunError struct {
	Kind     error
	ExitCode uint32
	Detail   string
}

func (e *RunError) Error() string {
	switch e.Kind {
	case ErrExit:
		return fmt.Sprintf("exit status %d", e.ExitCode)
	case ErrTrap:
		return "trap: " + e.Detail
	}
	return e.Kind.Error()
}

func (e *RunError) Unwrap() error { return e.Kind }

// capWriter keeps up to max bytes; past that it cancels the instance
// (stdout) or silently drops (stderr).
type capWriter struct {
	buf    bytes.Buffer
	max    int
	over   bool
	cancel context.CancelFunc // nil: drop instead
}

func (w *capWriter) Write(p []byte) (int, error) {
	room := w.max - w.buf.Len()
	if len(p) > room {
		if room > 0 {
			w.buf.Write(p[:room])
		}
		w.over = true
		if w.cancel != nil {
			w.cancel()
			return room, errors.New("output limit exceeded")
		}
		return len(p), nil
	}
	return w.buf.Write(p)
}

// Run instantiates a fresh instance, runs it to completion and discards it.
// A RunError says how the guest failed; other errors are the host's.
func (m *Module) Run(ctx context.Context, inv Invocation) (Result, error) {
	if inv.MaxStdout <= 0 {
		inv.MaxStdout = 1 << 20
	}
	if inv.MaxStderr <= 0 {
		inv.MaxStderr = 64 << 10
	}
	var cancel context.CancelFunc
	if inv.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, inv.Timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	var outCut bool
	stdout := &capWriter{max: inv.MaxStdout, cancel: func() { outCut = true; cancel() }}
	stderr := &capWriter{max: inv.MaxStderr}
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithArgs(append([]string{inv.Name}, inv.Args...)...).
		WithStdin(bytes.NewReader(inv.Stdin)).
		WithStdout(stdout).
		WithStderr(stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	for _, kv := range inv.Env {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				cfg = cfg.WithEnv(kv[:i], kv[i+1:])
				break
			}
		}
	}
	var res Result
	t0 := time.Now()
	mod, err := m.rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, m.pool), m.cm, cfg)
	res.Instantiate = time.Since(t0)
	if err != nil {
		return res, m.classify(ctx, err, outCut)
	}
	defer mod.Close(context.Background())
	start := mod.ExportedFunction("_start")
	t1 := time.Now()
	_, err = start.Call(ctx)
	res.Run = time.Since(t1)
	res.Stdout = stdout.buf.Bytes()
	res.Stderr = stderr.buf.Bytes()
	if err != nil {
		var ee *sys.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 0 && !outCut {
			return res, nil
		}
		rerr := m.classify(ctx, err, outCut)
		if errors.As(err, &ee) {
			res.ExitCode = ee.ExitCode()
		}
		return res, rerr
	}
	return res, nil
}

func (m *Module) classify(ctx context.Context, err error, outCut bool) error {
	if outCut {
		return &RunError{Kind: ErrOutput}
	}
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return &RunError{Kind: ErrTimeout}
		case sys.ExitCodeContextCanceled:
			if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				return &RunError{Kind: ErrTimeout}
			}
			return &RunError{Kind: ErrTrap, Detail: "cancelled"}
		}
		return &RunError{Kind: ErrExit, ExitCode: ee.ExitCode()}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &RunError{Kind: ErrTimeout}
	}
	return &RunError{Kind: ErrTrap, Detail: trimTrap(err.Error())}
}

// trimTrap keeps the first line of a wazero trap (the stack follows).
func trimTrap(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
