package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrRenameUnsupported: cgroup v2 has no rename (the kernel's v2 hierarchy
// refuses it); the caller creates the cgroup under its name instead.
var ErrRenameUnsupported = errors.New("cgroup v2 cannot rename a cgroup")

// WarmPrefix names the cgroups the daemon prepares for warm container
// monitors' inits ahead of a container: "warm-" and the monitor's pid.
const WarmPrefix = "warm-"

// Rename gives the cgroup, with its processes and device rules, a new
// name (v1: each hierarchy's directory is renamed in place). The old
// *Cgroup must not be used after a successful Rename.
func (c *Cgroup) Rename(id string) (*Cgroup, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	b, ok := c.b.(*v1)
	if !ok {
		return nil, ErrRenameUnsupported
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var done [][2]string
	for _, real := range b.dirs() {
		to := filepath.Join(filepath.Dir(real), id)
		if err := os.Rename(real, to); err != nil {
			for i := len(done) - 1; i >= 0; i-- {
				os.Rename(done[i][1], done[i][0])
			}
			return nil, fmt.Errorf("rename cgroup %s to %s: %w", c.id, id, err)
		}
		done = append(done, [2]string{real, to})
	}
	nb, err := newV1(c.cfg, id)
	if err != nil {
		return nil, err
	}
	return &Cgroup{id: id, cfg: c.cfg, b: nb, warnings: c.warnings, applied: c.applied}, nil
}

// AllowDevices adds allow rules ("c 188:0 rwm"; "a" for every device) to
// those RestrictDevices wrote. On v2 it returns ErrDevicesV2.
func (c *Cgroup) AllowDevices(allow []string) error {
	if c.cfg.mode == "v2" || c.Path("devices") == "" {
		return ErrDevicesV2
	}
	// One open for all the rules: the kernel takes one rule per write.
	f, err := os.OpenFile(filepath.Join(c.Path("devices"), "devices.allow"), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("devices controller: %w", err)
	}
	defer f.Close()
	for _, r := range allow {
		if _, err := f.Write([]byte(r)); err != nil {
			return fmt.Errorf("allow device %q: %w", r, err)
		}
	}
	return f.Close()
}

// ReclaimWarm removes the cgroups of warm monitors that are gone (killed
// before they were given a container); a live monitor's, another daemon's
// perhaps, is left alone. It returns the names it removed.
func ReclaimWarm(opts ...Option) ([]string, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	ids, err := listIDs(cfg)
	if err != nil {
		return nil, err
	}
	var gone []string
	for _, id := range ids {
		pid, err := strconv.Atoi(strings.TrimPrefix(id, WarmPrefix))
		if !strings.HasPrefix(id, WarmPrefix) || err != nil {
			continue
		}
		if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmd), "__shim") {
			continue
		}
		gone = append(gone, id)
	}
	return removeAll(cfg, gone)
}
