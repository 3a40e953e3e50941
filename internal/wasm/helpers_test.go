package wasm_test

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"
)

func fmtSscanf(s string, n *int) (int, error) { return fmt.Sscanf(s, "got %d MiB", n) }

func countFiles(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}
