// Package wasmtest builds WebAssembly test modules from C source with
// Debian's clang and wasi-libc, so tests exercise real guests compiled the
// way users compile theirs. Built modules are cached by source hash.
package wasmtest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Clang is the compiler used; override with FLICK_WASM_CC.
func Clang() string {
	if cc := os.Getenv("FLICK_WASM_CC"); cc != "" {
		return cc
	}
	return "clang"
}

// BuildC compiles C source to a WASI command module and returns its bytes.
func BuildC(t testing.TB, src string) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte(src))
	dir := filepath.Join(os.TempDir(), "flick-wasmtest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, hex.EncodeToString(sum[:8])+".wasm")
	if b, err := os.ReadFile(out); err == nil {
		return b
	}
	cfile := out + ".c"
	if err := os.WriteFile(cfile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := out + ".tmp"
	cmd := exec.Command(Clang(), "--target=wasm32-wasi", "-O2", "-o", tmp, cfile)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("clang --target=wasm32-wasi failed (install clang lld wasi-libc libclang-rt-14-dev-wasm32): %v\n%s", err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BuildFile compiles testdata/NAME.c from this package.
func BuildFile(t testing.TB, name string) []byte {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	src, err := os.ReadFile(filepath.Join(filepath.Dir(self), "testdata", name+".c"))
	if err != nil {
		t.Fatal(err)
	}
	return BuildC(t, string(src))
}
