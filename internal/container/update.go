package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	mcontainer "github.com/moby/moby/api/types/container"
	mevents "github.com/moby/moby/api/types/events"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/cgroup"
	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
)

// specResources and specRestart are a container's limits and restart
// policy as its spec carries them, from its HostConfig.
func specResources(hc *mcontainer.HostConfig) bundle.Resources {
	r := bundle.Resources{MemoryBytes: hc.Memory, MemorySwapBytes: hc.MemorySwap, CPUs: float64(hc.NanoCPUs) / 1e9,
		CPUShares: hc.CPUShares}
	if hc.PidsLimit != nil {
		r.PidsLimit = *hc.PidsLimit
	}
	return r
}

// checkRestart refuses what Docker refuses of a restart policy.
func checkRestart(p mcontainer.RestartPolicy) error {
	switch p.Name {
	case "", "no", "always", "unless-stopped", "on-failure":
	default:
		return errdefs.NewInvalidArgument(fmt.Errorf("invalid restart policy '%s'", p.Name))
	}
	if p.MaximumRetryCount < 0 {
		return errdefs.NewInvalidArgument(errors.New("invalid restart policy: maximum retry count cannot be negative"))
	}
	if p.MaximumRetryCount > 0 && p.Name != "on-failure" {
		return errdefs.NewInvalidArgument(fmt.Errorf("invalid restart policy: maximum retry count can only be used with 'on-failure'"))
	}
	return nil
}

func specRestart(hc *mcontainer.HostConfig) bundle.RestartPolicy {
	switch p := hc.RestartPolicy; p.Name {
	case "always", "unless-stopped", "on-failure":
		return bundle.RestartPolicy{Name: string(p.Name), Max: p.MaximumRetryCount}
	}
	return bundle.RestartPolicy{}
}

// Update changes a container's limits and restart policy (docker update),
// running or not: a running container's cgroup takes the new limits at
// once, and its monitor the new policy at its app's next exit. Fields left
// zero keep their value, as Docker's.
//
// The record (container.json) is the truth and is written first, durably;
// the spec follows, and a start makes it agree with the record again, so a
// power cut between the two writes loses nothing.
func (m *Manager) Update(ctx context.Context, ref string, uc mcontainer.UpdateConfig) ([]string, error) {
	if err := unsupportedUpdate(uc.Resources); err != nil {
		return nil, err
	}
	c, unlock, err := m.getLocked(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	hc := *c.HostConfig
	r := uc.Resources
	if r.Memory != 0 {
		hc.Memory = r.Memory
	}
	if r.MemorySwap != 0 {
		hc.MemorySwap = r.MemorySwap
	}
	if r.NanoCPUs != 0 {
		hc.NanoCPUs = r.NanoCPUs
	}
	if r.CPUShares != 0 {
		hc.CPUShares = r.CPUShares
	}
	if r.PidsLimit != nil {
		n := *r.PidsLimit
		hc.PidsLimit = &n
	}
	if uc.RestartPolicy.Name != "" {
		if err := checkRestart(uc.RestartPolicy); err != nil {
			return nil, err
		}
		if uc.RestartPolicy.Name != "no" && hc.AutoRemove {
			return nil, errdefs.NewInvalidArgument(errors.New("restart policy cannot be updated because AutoRemove is enabled for the container"))
		}
		hc.RestartPolicy = uc.RestartPolicy
	}
	res := specResources(&hc)
	if err := cgroup.Validate(cgroup.Resources(res)); err != nil {
		return nil, err
	}
	// Live first: a limit the kernel refuses (memory under what the app
	// uses, on cgroup v1) fails the update before anything is recorded,
	// and what was applied of it is put back. The cgroup exists while a
	// monitor runs the container, between two runs of a restart policy
	// too.
	var warnings []string
	cg, err := cgroup.Open(c.ID)
	switch {
	case err == nil:
		if err := cg.Update(cgroup.Resources(res)); err != nil {
			if _, gone := os.Stat(cg.Dirs()[0]); !os.IsNotExist(gone) {
				cg.Update(cgroup.Resources(specResources(c.HostConfig)))
				return nil, fmt.Errorf("update the limits of container %s: %w (nothing was changed)", c.Name, err)
			}
			// The container ended meanwhile: recorded for its next start.
		}
		warnings = cg.Warnings()
	case !errdefs.Is(err, errdefs.NotFound) && !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("update the limits of container %s: %w", c.Name, err)
	}
	rec := c.Record
	rec.HostConfig = &hc
	if err := m.writeRecord(c.Bundle, rec); err != nil {
		return nil, fmt.Errorf("update container %s: %w", c.Name, err)
	}
	spec, err := bundle.ReadSpec(c.Bundle)
	if err != nil {
		return nil, err
	}
	if err := specFromRecord(c.Bundle, &spec, &hc); err != nil {
		return nil, err
	}
	m.emit(Container{Record: rec, Bundle: c.Bundle}, mevents.ActionUpdate, nil)
	return warnings, nil
}

// specFromRecord makes the bundle's spec carry the record's limits and
// restart policy (hc), writing it only if they differ: after an update,
// and at a start after a power cut that fell between an update's two
// writes.
func specFromRecord(dir string, spec *bundle.Spec, hc *mcontainer.HostConfig) error {
	res, restart := specResources(hc), specRestart(hc)
	if spec.Resources == res && spec.Restart == restart {
		return nil
	}
	spec.Resources, spec.Restart = res, restart
	return bundle.WriteSpec(dir, *spec, !spec.Ephemeral)
}

// writeRecord replaces the bundle's container.json with rec, durably
// (rename and update change a record in place).
func (m *Manager) writeRecord(dir string, rec Record) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(dir, "container.json"), raw, 0o600); err != nil {
		return err
	}
	m.forget(rec.ID)
	return nil
}

// unsupportedUpdate refuses the update options Flick cannot apply, rather
// than answering that it did.
func unsupportedUpdate(r mcontainer.Resources) error {
	var what string
	switch {
	case r.BlkioWeight != 0 || len(r.BlkioWeightDevice) > 0 || len(r.BlkioDeviceReadBps) > 0 || len(r.BlkioDeviceWriteBps) > 0 ||
		len(r.BlkioDeviceReadIOps) > 0 || len(r.BlkioDeviceWriteIOps) > 0:
		what = "block I/O limits"
	case r.CpusetCpus != "" || r.CpusetMems != "":
		what = "--cpuset-cpus/--cpuset-mems"
	case r.CPUPeriod != 0 || r.CPUQuota != 0 || r.CPURealtimePeriod != 0 || r.CPURealtimeRuntime != 0:
		what = "--cpu-period/--cpu-quota (use --cpus)"
	case r.MemoryReservation != 0:
		what = "--memory-reservation"
	case r.MemorySwappiness != nil, r.OomKillDisable != nil:
		what = "swappiness and the OOM killer"
	case len(r.Ulimits) > 0, len(r.Devices) > 0, len(r.DeviceCgroupRules) > 0, len(r.DeviceRequests) > 0:
		what = "ulimits and devices (they are set when the container is created)"
	default:
		return nil
	}
	return errdefs.NewNotImplemented(fmt.Errorf("docker update of %s: Flick updates --memory, --memory-swap, --cpus, --cpu-shares, --pids-limit and --restart", what))
}
