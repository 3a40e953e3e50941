// Command goecho is the Go (GOOS=wasip1) twin of examples/functions/echo:
// the result is the payload. The reflex benchmark runs it to show what Go's
// own runtime start costs per fresh instance.
package main

import (
	"io"
	"os"
)

func main() {
	if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
		os.Exit(1)
	}
}
