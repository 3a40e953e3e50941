// Package helper installs the two container helpers a make build embeds in
// flick: cmd/flick-monitor (a container's monitor, internal/monitor) and
// cmd/flick-init (its init, internal/runtime), each linked without the rest
// of the engine. A monitor lives as long as its container, and a process
// maps all of a small binary it runs: from the 18 MiB flick binary a monitor
// was 15 MiB resident, from the 2.5 MiB monitor binary it is about 3.
// Inits start in a third of flick's time.
//
// The helpers are written once per build to the data root, named by their
// digest, and run from there. A plain `go build` (without the flickhelper
// tag) embeds nothing; Install then answers flick's own executable, whose
// main runs the same roles.
package helper

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unsafe"

	"github.com/flick-edge/flick/internal/durable"
	"golang.org/x/sys/unix"
)

// The helpers' names; an installed one is NAME-<first 16 hex digits of its
// sha256>. Files of the names in retired (earlier builds' helpers) are
// removed too.
const (
	MonitorName = "flick-monitor"
	InitName    = "flick-init"
)

var retired = []string{"flick-helper"}

// embedded is one helper binary this build carries.
type embedded struct {
	name          string
	image, digest *string // set by embed_on.go; empty without the flickhelper tag
}

var helpers = []embedded{{MonitorName, &monitorImage, &monitorDigest}, {InitName, &initImage, &initDigest}}

// Embedded reports whether this build carries the helpers.
func Embedded() bool { return monitorImage != "" && initImage != "" }

// Paths are the installed helpers.
type Paths struct {
	Monitor string // cmd/flick-monitor: one per running container
	Init    string // cmd/flick-init: each container's init, until it execs the app
}

// Install makes sure dir holds this build's helpers, each verified against
// its digest, removes the helpers of other builds (running monitors keep
// theirs: an unlinked file lives on while executed or held open), and
// returns their paths. Without embedded helpers both are flick's own
// executable.
func Install(dir string) (Paths, error) {
	if Embedded() {
		if err := durable.MkdirAll(dir, 0o700); err != nil {
			return Paths{}, err
		}
	}
	p, err := place(func(h embedded) (string, error) { return install(dir, h) })
	if err == nil && Embedded() {
		removeOthers(dir, []string{p.Monitor, p.Init})
	}
	return p, err
}

// memfds keeps InMemory's files open: they exist while this process runs.
var memfds []*os.File

// InMemory is Install for a data root that cannot hold the helpers (full,
// or read-only): it writes them to sealed memfd files of this process and
// returns their /proc/PID/fd paths, runnable by any root process while
// this one runs (a monitor keeps its own binary and its init's open). They
// cost their size in unevictable memory. Without embedded helpers both are
// flick's own executable.
func InMemory() (Paths, error) { return place(inMemory) }

// place puts each embedded helper where put says and returns their paths;
// without embedded helpers both are flick's own executable.
func place(put func(embedded) (string, error)) (Paths, error) {
	if !Embedded() {
		self, err := os.Executable()
		return Paths{self, self}, err
	}
	var got []string
	for _, h := range helpers {
		p, err := put(h)
		if err != nil {
			return Paths{}, err
		}
		got = append(got, p)
	}
	return Paths{Monitor: got[0], Init: got[1]}, nil
}

func inMemory(h embedded) (string, error) {
	fd, err := unix.MemfdCreate(h.name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return "", fmt.Errorf("container helper %s in memory: %w", h.name, err)
	}
	f := os.NewFile(uintptr(fd), h.name)
	if _, err := f.WriteString(*h.image); err != nil {
		f.Close()
		return "", fmt.Errorf("container helper %s in memory: %w", h.name, err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		f.Close()
		return "", fmt.Errorf("seal container helper %s: %w", h.name, err)
	}
	memfds = append(memfds, f)
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd), nil
}

func install(dir string, h embedded) (string, error) {
	sum := strings.TrimSpace(*h.digest)
	if len(sum) != sha256.Size*2 {
		return "", fmt.Errorf("embedded %s: bad digest %q (rebuild with make build)", h.name, sum)
	}
	name := filepath.Join(dir, h.name+"-"+sum[:16])
	if got, _ := fileDigest(name); got != sum {
		// Missing, or damaged (flash bit rot, a hand edit): the new copy
		// replaces it atomically.
		if err := write(name, *h.image, sum); err != nil {
			return "", fmt.Errorf("install container helper %s: %w", name, err)
		}
	}
	return name, nil
}

// write writes the embedded image to name durably, checks it has digest
// sum, then lets go of the pages of flick's own binary that reading it
// brought in: they belong to no code and would otherwise count in the
// daemon's resident memory.
func write(name, image, sum string) error {
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

// removeOthers removes what earlier builds installed in dir (and temp
// files of cut writes), keeping the paths in keep.
func removeOthers(dir string, keep []string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		n := e.Name()
		if slices.Contains(keep, filepath.Join(dir, n)) {
			continue
		}
		for _, prefix := range append([]string{MonitorName, InitName}, retired...) {
			if strings.HasPrefix(n, prefix+"-") || strings.HasPrefix(n, "."+prefix+"-") {
				os.Remove(filepath.Join(dir, n))
				break
			}
		}
	}
}
