package wasm_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/wasm"
	"github.com/flick-edge/flick/internal/wasmtest"
)

func newEngine(t testing.TB) *wasm.Engine {
	t.Helper()
	e, err := wasm.NewEngine(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func compile(t testing.TB, e *wasm.Engine, name string, lim wasm.Limits) *wasm.Module {
	t.Helper()
	m, err := e.Compile(context.Background(), wasmtest.BuildFile(t, name), lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func TestRunEcho(t *testing.T) {
	e := newEngine(t)
	m := compile(t, e, "echo", wasm.Limits{})
	res, err := m.Run(context.Background(), wasm.Invocation{
		Name: "echo", Stdin: []byte("press"), Env: []string{"FLICK_TOPIC=home/hall/button"}, Timeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "PRESS" {
		t.Fatalf("stdout %q", res.Stdout)
	}
	if !strings.Contains(string(res.Stderr), "home/hall/button") {
		t.Fatalf("stderr %q", res.Stderr)
	}
}

func TestInstancesAreFreshAndIsolated(t *testing.T) {
	e := newEngine(t)
	m := compile(t, e, "echo", wasm.Limits{PoolSlots: 2})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := strings.Repeat(string(rune('a'+i%26)), 100+i)
			res, err := m.Run(context.Background(), wasm.Invocation{Stdin: []byte(in), Timeout: 5 * time.Second})
			if err != nil {
				errs <- err
				return
			}
			if string(res.Stdout) != strings.ToUpper(in) {
				errs <- errors.New("instance saw another's data: " + string(res.Stdout[:10]))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestSandboxHasNoFilesystem(t *testing.T) {
	e := newEngine(t)
	m := compile(t, e, "env", wasm.Limits{})
	res, err := m.Run(context.Background(), wasm.Invocation{Env: []string{"FLICK_FUNCTION=env", "A=b=c"}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Stdout)
	for _, want := range []string{"FLICK_FUNCTION=env\n", "A=b=c\n", "fopen=refused\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "PATH=") || strings.Contains(out, "HOME=") {
		t.Errorf("host environment leaked into the guest:\n%s", out)
	}
}

func TestLoopIsStoppedAtDeadline(t *testing.T) {
	e := newEngine(t)
	m := compile(t, e, "loop", wasm.Limits{})
	_, err := m.Run(context.Background(), wasm.Invocation{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, wasm.ErrTimeout) {
		t.Fatalf("want timeout, got %v", err)
	}
	// The module stays usable after killing an instance.
	_, err = m.Run(context.Background(), wasm.Invocation{Timeout: 20 * time.Millisecond})
	if !errors.Is(err, wasm.ErrTimeout) {
		t.Fatalf("second run: want timeout, got %v", err)
	}
}

func TestMemoryHogTrapsAtCap(t *testing.T) {
	e := newEngine(t)
	m := compile(t, e, "hog", wasm.Limits{MemoryPages: 64}) // 4 MiB
	res, err := m.Run(context.Background(), wasm.Invocation{Timeout: 10 * time.Second})
	if !errors.Is(err, wasm.ErrTrap) {
		t.Fatalf("want trap, got %v", err)
	}
	if !strings.Contains(string(res.Stderr), "MiB before the cap") {
		t.Fatalf("stderr %q", res.Stderr)
	}
	// "got N MiB": N must be under the 4 MiB cap.
	var n int
	if _, err := fmtSscanf(string(res.Stderr), &n); err != nil || n >= 4 {
		t.Fatalf("guest got %d MiB under a 4 MiB cap (%q)", n, res.Stderr)
	}
}

func TestStdoutFloodIsCut(t *testing.T) {
	e := newEngine(t)
	m := compile(t, e, "flood", wasm.Limits{})
	res, err := m.Run(context.Background(), wasm.Invocation{Timeout: 10 * time.Second, MaxStdout: 256 << 10})
	if !errors.Is(err, wasm.ErrOutput) {
		t.Fatalf("want output limit, got %v", err)
	}
	if len(res.Stdout) != 256<<10 {
		t.Fatalf("kept %d bytes, want exactly the cap", len(res.Stdout))
	}
}

func TestNonZeroExit(t *testing.T) {
	e := newEngine(t)
	m := compile(t, e, "fail", wasm.Limits{})
	res, err := m.Run(context.Background(), wasm.Invocation{Timeout: time.Second})
	var re *wasm.RunError
	if !errors.As(err, &re) || re.Kind != wasm.ErrExit || re.ExitCode != 3 {
		t.Fatalf("want exit 3, got %v", err)
	}
	if !bytes.Contains(res.Stderr, []byte("out of range")) {
		t.Fatalf("stderr %q", res.Stderr)
	}
}

func TestDeployRefusals(t *testing.T) {
	e := newEngine(t)
	cases := []struct {
		name string
		bin  []byte
		lim  wasm.Limits
		want string
	}{
		{"not wasm", []byte("#!/bin/sh\necho hi\n"), wasm.Limits{}, "not a WebAssembly module"},
		{"truncated", wasmtest.BuildFile(t, "echo")[:200], wasm.Limits{}, "invalid WebAssembly module"},
		{"foreign import", wasmtest.BuildFile(t, "badimport"), wasm.Limits{}, "env.open_socket"},
		{"initial memory over cap", wasmtest.BuildFile(t, "bigmem"), wasm.Limits{MemoryPages: 256}, "raise --memory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Compile(context.Background(), c.bin, c.lim)
			var de *wasm.DeployError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want deploy error containing %q, got %v", c.want, err)
			}
		})
	}
	// The big module runs when its cap allows it.
	m, err := e.Compile(context.Background(), wasmtest.BuildFile(t, "bigmem"), wasm.Limits{MemoryPages: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Run(context.Background(), wasm.Invocation{Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
}

func TestCompilationCacheSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	bin := wasmtest.BuildFile(t, "echo")
	for range 2 {
		e, err := wasm.NewEngine(dir)
		if err != nil {
			t.Fatal(err)
		}
		m, err := e.Compile(context.Background(), bin, wasm.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Run(context.Background(), wasm.Invocation{Stdin: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		m.Close()
		e.Close()
	}
	if n := countFiles(t, dir); n == 0 {
		t.Fatal("compilation cache directory is empty")
	}
}

// BenchmarkFreshInstance is the per-event cost: a new instance, stdin in,
// stdout out, instance gone.
func BenchmarkFreshInstance(b *testing.B) {
	for _, c := range []struct {
		name string
		file string
		lim  wasm.Limits
	}{{"c-echo", "echo", wasm.Limits{}}, {"c-bigmem-32MiB", "bigmem", wasm.Limits{MemoryPages: 1024}}} {
		b.Run(c.name, func(b *testing.B) {
			e := newEngine(b)
			m := compile(b, e, c.file, c.lim)
			inv := wasm.Invocation{Stdin: []byte(`{"button":"hall","press":"single"}`), Timeout: time.Second}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Run(context.Background(), inv); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
