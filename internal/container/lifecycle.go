package container

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/cgroup"
	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
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
// ends. It looks at a container when inotify says its bundle changed, and
// at all of them every sweepEvery (a safety net: a monitor adopted from an
// earlier daemon can end without a change to its bundle). When changes
// can go unnoticed (no inotify, or bundles past fs.inotify.max_user_watches)
// it looks at every container ten times a second.
func (m *Manager) Watch(ctx context.Context) {
	interval := func() time.Duration {
		if m.notify.degraded() {
			return 100 * time.Millisecond
		}
		return sweepEvery
	}
	every := interval()
	t := time.NewTicker(every)
	defer t.Stop()
	// Detached --rm containers that exited, by ID, and when to look again.
	due := map[string]time.Time{}
	var removals sync.WaitGroup
	defer removals.Wait()
	remind := time.NewTimer(time.Hour)
	defer remind.Stop()
	look := func(c Container) {
		if c.HostConfig == nil || !c.HostConfig.AutoRemove || c.State.Status != "exited" {
			delete(due, c.ID)
			return
		}
		// Detached --rm containers go as soon as their monitor settles
		// (a client waiting for the removal, docker run --rm, may remove
		// it first: either way it gets the exit code); attached clients
		// first read the log to its end, for up to 2 s.
		if !m.settled(c) || m.restarting(c.ID) {
			due[c.ID] = time.Now().Add(time.Second / 2)
			return
		}
		delete(due, c.ID)
		// Not on this goroutine: the removal waits for the container's
		// lock, which a start may hold for a while.
		removals.Add(1)
		go func() {
			defer removals.Done()
			m.awaitFollowers(ctx, c.ID, 2*time.Second)
			if m.restarting(c.ID) {
				return // looked at again when it exits
			}
			err := m.Remove(ctx, c.ID, false, false)
			if err != nil && !errdefs.Is(err, errdefs.NotFound) && !errdefs.Is(err, errdefs.Conflict) && ctx.Err() == nil {
				m.log.Warn("auto-remove", "name", c.Name, "err", err)
			}
		}()
	}
	sweep := func(lost bool) {
		all, err := m.List()
		if err != nil {
			return
		}
		live := map[string]bool{}
		for _, c := range all {
			live[c.ID] = true
			m.notify.watch(c.ID)
		}
		if lost {
			m.notify.retain(live)
		}
		m.observe(all)
		for _, c := range all {
			look(c)
		}
	}
	sweep(false)
	for {
		// The next reminder: the earliest container due.
		next := time.Duration(-1)
		for _, at := range due {
			if d := time.Until(at); next < 0 || d < next {
				next = max(d, 0)
			}
		}
		remind.Stop()
		if next >= 0 {
			remind.Reset(next)
		}
		if e := interval(); e != every {
			every = e
			t.Reset(every)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sweep(false)
		case <-m.notify.kick:
			ids, all := m.notify.takeDirty()
			if all {
				sweep(true)
				break
			}
			for _, id := range ids {
				c, err := m.load(id)
				if errors.Is(err, fs.ErrNotExist) { // removed
					m.unobserve(id)
					delete(due, id)
					continue
				}
				if err != nil {
					continue // the next sweep looks again
				}
				m.observeSeen(c)
				look(c)
			}
		case <-remind.C:
			now := time.Now()
			for id, at := range due {
				if at.After(now) {
					continue
				}
				if c, err := m.load(id); err == nil {
					look(c)
				} else if errors.Is(err, fs.ErrNotExist) {
					delete(due, id)
				} else {
					due[id] = now.Add(time.Second)
				}
			}
		}
	}
}

// sweepEvery is how often Watch looks at every container although inotify
// tells it of changes.
const sweepEvery = 10 * time.Second
