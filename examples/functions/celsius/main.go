// Command celsius is a Go (GOOS=wasip1 GOARCH=wasm) function: it turns a
// Fahrenheit reading into Celsius.
//
//	in  (sensors/attic/temp): {"f": 98.6}
//	out (sensors/attic/celsius): {"sensor":"attic","c":37}
//
// Go's own runtime start costs a few milliseconds per instance; use C,
// Rust, Zig or TinyGo for hot paths (see docs/RATIONALE.md).
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
)

type reading struct {
	F *float64 `json:"f"`
}

func main() {
	var r reading
	if err := json.NewDecoder(os.Stdin).Decode(&r); err != nil || r.F == nil {
		fmt.Fprintln(os.Stderr, `want a JSON reading like {"f": 72.5}`)
		os.Exit(2)
	}
	c := math.Round((*r.F-32)*5/9*10) / 10
	json.NewEncoder(os.Stdout).Encode(map[string]any{"sensor": os.Getenv("FLICK_SEGMENT_1"), "c": c})
}
