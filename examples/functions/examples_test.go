// Package functions_test builds the example functions from source, the
// way the Makefile does, and runs them in Flick's Wasm engine.
package functions_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/wasm"
	"github.com/flick-edge/flick/internal/wasmtest"
)

func engine(t *testing.T) *wasm.Engine {
	e, err := wasm.NewEngine(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func run(t *testing.T, bin []byte, payload string, env ...string) (wasm.Result, error) {
	t.Helper()
	m, err := engine(t).Compile(context.Background(), bin, wasm.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	return m.Run(context.Background(), wasm.Invocation{Stdin: []byte(payload), Env: env, Timeout: 5 * time.Second})
}

func TestChimeC(t *testing.T) {
	src, err := os.ReadFile("chime/chime.c")
	if err != nil {
		t.Fatal(err)
	}
	bin := wasmtest.BuildC(t, string(src))
	res, err := run(t, bin, `{"press":"long"}`, "FLICK_SEGMENT_1=hall")
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Room, Tune string
		Volume     int
	}
	if err := json.Unmarshal(res.Stdout, &out); err != nil || out.Room != "hall" || out.Tune != "westminster" || out.Volume != 80 {
		t.Fatalf("%s %v", res.Stdout, err)
	}
	if _, err := run(t, bin, `{}`, `FLICK_SEGMENT_1=ha"ll`); err == nil {
		t.Fatal("room with a quote accepted")
	}
}

func TestCelsiusGo(t *testing.T) {
	out := filepath.Join(t.TempDir(), "celsius.wasm")
	cmd := exec.Command("go", "build", "-o", out, "./celsius")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	res, err := run(t, bin, `{"f": 98.6}`, "FLICK_SEGMENT_1=attic")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Sensor string
		C      float64
	}
	if err := json.Unmarshal(res.Stdout, &got); err != nil || got.Sensor != "attic" || got.C != 37 {
		t.Fatalf("%s %v", res.Stdout, err)
	}
	if _, err := run(t, bin, `not json`); err == nil {
		t.Fatal("bad reading accepted")
	}
}

func TestEchoC(t *testing.T) {
	src, err := os.ReadFile("echo/echo.c")
	if err != nil {
		t.Fatal(err)
	}
	res, err := run(t, wasmtest.BuildC(t, string(src)), `{"id":7}`)
	if err != nil || string(res.Stdout) != `{"id":7}` {
		t.Fatalf("%q %v", res.Stdout, err)
	}
}
