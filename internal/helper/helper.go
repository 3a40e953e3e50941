// Package helper installs the container helper that a make build embeds in
// flick: cmd/flick-helper, the monitor and init roles linked without the
// rest of the engine. A monitor lives as long as its container; run from
// the 18 MiB flick binary, the Go runtime's start alone maps about 12 MiB of
// it, so each monitor would cost that much resident memory. From the helper
// it costs a third of it, and a cold monitor or init starts in a third of
// the time.
//
// The helper is written once per build to the data root, named by its
// digest, and run from there. A plain `go build` (without the flickhelper
// tag) embeds nothing; Install then answers flick's own executable, whose
// runtime.RunRole runs the same roles.
package helper

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/flick-edge/flick/internal/durable"
	"golang.org/x/sys/unix"
)

// Prefix starts every installed helper's file name.
const Prefix = "flick-helper-"

// Embedded reports whether this build carries the helper.
func Embedded() bool { return image != "" }

// Install makes sure dir holds this build's helper, verified against its
// digest, removes the helpers of other builds (running monitors keep
// theirs: an unlinked file lives on while executed), and returns its path.
// Without an embedded helper it returns flick's own executable.
func Install(dir string) (string, error) {
	if image == "" {
		return os.Executable()
	}
	sum := strings.TrimSpace(digest)
	if len(sum) != sha256.Size*2 {
		return "", fmt.Errorf("embedded helper: bad digest %q (rebuild with make build)", sum)
	}
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	name := filepath.Join(dir, Prefix+sum[:16])
	if got, _ := fileDigest(name); got != sum {
		// Missing, or damaged (flash bit rot, a hand edit): the new copy
		// replaces it atomically.
		if err := write(name, sum); err != nil {
			return "", fmt.Errorf("install container helper %s: %w", name, err)
		}
	}
	removeOthers(dir, filepath.Base(name))
	return name, nil
}

// write writes the embedded image to name durably, checks it has digest
// sum, then lets go of the pages of flick's own binary that reading it
// brought in: they belong to no code and would otherwise count in the
// daemon's resident memory.
func write(name, sum string) error {
	data := unsafe.Slice(unsafe.StringData(image), len(image))
	err := durable.WriteFile(name, data, 0o755)
	if err == nil {
		got, derr := fileDigest(name)
		if derr == nil && got != sum {
			derr = fmt.Errorf("written copy has digest %s (disk or memory fault)", got)
		}
		err = derr
	}
	dropPages(data)
	return err
}

// dropPages drops the whole pages inside data from this process's page
// tables (the file still holds them; a later read faults them back).
func dropPages(data []byte) {
	page := uintptr(os.Getpagesize())
	base := unsafe.Pointer(unsafe.SliceData(data))
	start := uintptr(base)
	first, last := (start+page-1)&^(page-1), (start+uintptr(len(data)))&^(page-1)
	if last <= first {
		return
	}
	unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(base, first-start)), last-first), unix.MADV_DONTNEED)
}

func fileDigest(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func removeOthers(dir, keep string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if n := e.Name(); n != keep && (strings.HasPrefix(n, Prefix) || strings.HasPrefix(n, "."+Prefix)) {
			os.Remove(filepath.Join(dir, n))
		}
	}
}
