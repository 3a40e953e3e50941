package container

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/cgroup"
	"github.com/flick-edge/flick/internal/durable"
)

// Recover runs at daemon start. Containers whose monitor still runs are
// adopted as they are (the daemon was restarted or replaced, the apps were
// not). Containers that were running when the host went down (their monitor
// is gone) are marked exited and started again if their restart policy
// says so, as Docker does at boot. The leftover cgroups of its containers are removed.
func (m *Manager) Recover(ctx context.Context) {
	if ents, err := os.ReadDir(m.cfg.Root); err == nil {
		for _, e := range ents {
			if n := e.Name(); strings.HasPrefix(n, stagePrefix) || strings.HasPrefix(n, durable.TrashPrefix) {
				// A create or a removal cut short by a crash.
				if err := os.RemoveAll(filepath.Join(m.cfg.Root, n)); err != nil {
					m.log.Warn("remove leftover container bundle", "dir", n, "err", err)
				} else {
					m.log.Info("removed leftover container bundle", "dir", n)
				}
			}
		}
	}
	all, err := m.List()
	if err != nil {
		m.log.Error("list containers", "err", err)
		return
	}
	keep := map[string]bool{}
	for _, c := range all {
		if shimAlive(c.State.ShimPid) {
			keep[c.ID] = true
			m.log.Info("adopted running container", "name", c.Name, "pid", c.State.Pid)
			continue
		}
		if c.State.Status == "running" || c.State.Status == "restarting" {
			st := c.State
			st.Status, st.ExitCode, st.FinishedAt, st.Pid = "exited", 255, time.Now().UTC(), 0
			st.Error = "the host or its monitor stopped while the container ran"
			writeState(c.Bundle, st)
			c.State = st
		}
		if m.restartAtBoot(c) {
			keep[c.ID] = true
			if err := m.Start(ctx, c.ID); err != nil {
				m.log.Error("restart policy: start failed", "name", c.Name, "err", err)
			} else {
				m.log.Info("restart policy: started", "name", c.Name, "policy", c.HostConfig.RestartPolicy.Name)
			}
		}
	}
	if m.cfg.Network != nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(m.cfg.Root), "network")); err == nil {
			ids := map[string]bool{}
			for _, c := range all {
				ids[c.ID] = true
			}
			if net, err := m.cfg.Network(); err != nil {
				m.log.Warn("bridge network", "err", err)
			} else if gone, err := net.Sweep(ids); err != nil {
				m.log.Warn("sweep network endpoints", "err", err)
			} else if len(gone) > 0 {
				m.log.Info("removed endpoints of containers that are gone", "ids", gone)
			}
		}
	}
	// Only this store's containers: another daemon's (another data root)
	// share the cgroup parent and are none of ours.
	var gone []string
	for _, c := range all {
		if !keep[c.ID] {
			gone = append(gone, c.ID)
		}
	}
	if swept, err := cgroup.ReclaimWarm(); err != nil {
		m.log.Warn("sweep warm monitors' cgroups", "err", err)
	} else if len(swept) > 0 {
		m.log.Info("removed cgroups of warm monitors that are gone", "cgroups", swept)
	}
	if swept, err := cgroup.Reclaim(gone); err != nil {
		m.log.Warn("sweep container cgroups", "err", err)
	} else if len(swept) > 0 {
		m.log.Info("removed leftover container cgroups", "ids", swept)
	}
}

func (m *Manager) restartAtBoot(c Container) bool {
	if _, err := os.Stat(filepath.Join(c.Bundle, bundle.StopFile)); err == nil {
		return false
	}
	switch c.HostConfig.RestartPolicy.Name {
	case "always", "unless-stopped":
		return c.State.Status != ""
	case "on-failure":
		return c.State.Status != "" && c.State.ExitCode != 0
	}
	return false
}

func writeState(dir string, st bundle.State) {
	if err := bundle.WriteState(dir, st, true); err != nil {
		_ = err
	}
}

// Watch turns the monitors' state changes into events (start, die, oom)
// and removes detached --rm containers once they have exited, until ctx
// ends.
func (m *Manager) Watch(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		all, err := m.List()
		if err != nil {
			continue
		}
		m.observe(all)
		for _, c := range all {
			// A client waiting for the removal (docker run --rm) removes it
			// itself at once, with the exit status in hand; this is the
			// fallback for detached --rm containers.
			if c.HostConfig != nil && c.HostConfig.AutoRemove && c.State.Status == "exited" && !shimAlive(c.State.ShimPid) &&
				time.Since(c.State.FinishedAt) > 2*time.Second {
				if err := m.Remove(ctx, c.ID, false, false); err != nil {
					m.log.Warn("auto-remove", "name", c.Name, "err", err)
				}
			}
		}
	}
}
