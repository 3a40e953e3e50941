package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
)

// DefaultDeviceRules is Docker's device allowlist: any node may be created
// (m), but only these may be read or written: null, zero, full, random,
// urandom, tty, console, ptmx, the pts slaves and tun.
var DefaultDeviceRules = []string{
	"c *:* m", "b *:* m",
	"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
	"c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm",
}

// RestrictDevices limits the devices the cgroup's processes may open to the
// allow rules ("c 188:0 rwm" form), denying everything else. On cgroup v1 it
// writes the devices controller's files. On v2 device control needs an eBPF
// program, which Flick does not load: it returns ErrDevicesV2, and the
// runtime relies on nodev mounts instead (see docs/RATIONALE.md).
func (c *Cgroup) RestrictDevices(allow []string) error {
	if c.cfg.mode == "v2" {
		return ErrDevicesV2
	}
	dir := c.Path("devices")
	if dir == "" {
		return ErrDevicesV2
	}
	if _, err := os.Stat(filepath.Join(dir, "devices.deny")); err != nil {
		return fmt.Errorf("devices controller: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "devices.deny"), []byte("a"), 0); err != nil {
		return fmt.Errorf("deny all devices: %w", err)
	}
	return c.AllowDevices(allow)
}

// ErrDevicesV2 says device rules are not enforced by the cgroup.
var ErrDevicesV2 = fmt.Errorf("cgroup v2 device rules need eBPF, which Flick does not load")
