package container

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flick-edge/flick/internal/cgroup"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/snapshot"
	mcontainer "github.com/moby/moby/api/types/container"
	mvolume "github.com/moby/moby/api/types/volume"
)

// hostCPUNs is the host's total CPU time (all states), as Docker's
// system_cpu_usage: the denominator of `docker stats`' CPU %.
func hostCPUNs() uint64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && fields[0] == "cpu" {
			var ticks uint64
			for _, v := range fields[1:] {
				n, _ := strconv.ParseUint(v, 10, 64)
				ticks += n
			}
			return ticks * (1e9 / 100) // USER_HZ is 100 on Linux
		}
	}
	return 0
}

func (m *Manager) sample(c Container) (mcontainer.StatsResponse, error) {
	s := mcontainer.StatsResponse{ID: c.ID, Name: "/" + c.Name, OSType: "linux", Read: time.Now().UTC()}
	if !c.Running() {
		return s, nil
	}
	cg, err := cgroup.Open(c.ID)
	if err != nil {
		return s, err
	}
	st, err := cg.Stats()
	if err != nil {
		return s, err
	}
	s.CPUStats = mcontainer.CPUStats{
		CPUUsage: mcontainer.CPUUsage{TotalUsage: st.CPU.TotalNs, UsageInKernelmode: st.CPU.SystemNs, UsageInUsermode: st.CPU.UserNs,
			PercpuUsage: st.CPU.PerCPUNs},
		SystemUsage: hostCPUNs(), OnlineCPUs: uint32(runtime.NumCPU()),
		ThrottlingData: mcontainer.ThrottlingData{Periods: st.CPU.Periods, ThrottledPeriods: st.CPU.ThrottledPeriods, ThrottledTime: st.CPU.ThrottledNs},
	}
	limit := st.Memory.Limit
	if st.Memory.Unlimited || limit == 0 {
		limit = hostMemory()
	}
	s.MemoryStats = mcontainer.MemoryStats{Usage: st.Memory.Usage, MaxUsage: st.Memory.MaxUsage, Limit: limit, Failcnt: st.Memory.Failcnt, Stats: st.Memory.Stat}
	s.PidsStats = mcontainer.PidsStats{Current: st.Pids.Current, Limit: st.Pids.Limit}
	return s, nil
}

func hostMemory() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return 0
}

// Stats sends `docker stats` samples: one (with a pre-sample taken a
// moment before, so CPU % can be computed) or, with stream, one a second
// until ctx ends or the container stops.
func (m *Manager) Stats(ctx context.Context, ref string, stream bool, fn func(mcontainer.StatsResponse) error) error {
	c, err := m.Get(ref)
	if err != nil {
		return err
	}
	prev, err := m.sample(c)
	if err != nil {
		return err
	}
	interval := time.Second
	if !stream {
		interval = 500 * time.Millisecond
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		if c, err = m.Get(c.ID); err != nil {
			return err
		}
		cur, err := m.sample(c)
		if err != nil && !errdefs.Is(err, errdefs.NotFound) {
			return err
		}
		cur.PreRead, cur.PreCPUStats = prev.Read, prev.CPUStats
		if err := fn(cur); err != nil || !stream || !c.Running() {
			return err
		}
		prev = cur
	}
}

// Top lists the container's processes, as `docker top` shows them.
func (m *Manager) Top(ref string) (mcontainer.TopResponse, error) {
	c, err := m.Get(ref)
	if err != nil {
		return mcontainer.TopResponse{}, err
	}
	if !c.Running() {
		return mcontainer.TopResponse{}, errdefs.NewConflict(fmt.Errorf("container %s is not running", c.Name))
	}
	cg, err := cgroup.Open(c.ID)
	if err != nil {
		return mcontainer.TopResponse{}, err
	}
	pids, err := cg.Pids()
	if err != nil {
		return mcontainer.TopResponse{}, err
	}
	sort.Ints(pids)
	resp := mcontainer.TopResponse{Titles: []string{"UID", "PID", "PPID", "STAT", "TIME", "CMD"}}
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// comm may contain spaces: fields start after the last ')'.
		s := string(stat)
		rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(rest) < 13 {
			continue
		}
		utime, _ := strconv.ParseUint(rest[11], 10, 64)
		stime, _ := strconv.ParseUint(rest[12], 10, 64)
		cpu := time.Duration(utime+stime) * 10 * time.Millisecond
		uid := "?"
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "Uid:"); ok {
					if f := strings.Fields(v); len(f) > 0 {
						uid = f[0]
					}
				}
			}
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		line := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		if line == "" {
			line = "[" + strings.TrimSuffix(s[strings.IndexByte(s, '(')+1:strings.LastIndexByte(s, ')')], "") + "]"
		}
		resp.Processes = append(resp.Processes, []string{uid, strconv.Itoa(pid), rest[1], rest[0],
			fmt.Sprintf("%02d:%02d:%02d", int(cpu.Hours()), int(cpu.Minutes())%60, int(cpu.Seconds())%60), line})
	}
	return resp, nil
}

// Prune removes every stopped container that match accepts (nil: all) and
// reports what it freed.
func (m *Manager) Prune(ctx context.Context, match func(Container) bool) (mcontainer.PruneReport, error) {
	var rep mcontainer.PruneReport
	all, err := m.List()
	if err != nil {
		return rep, err
	}
	for _, c := range all {
		// A monitor that reported the final exit may still be tidying
		// up (its cgroup, the root's unmounts): that container is done,
		// as the one a `run` just waited for. One whose monitor has not
		// (a restart may follow) is left alone.
		if c.Running() || !m.settled(c) || (match != nil && !match(c)) {
			continue
		}
		n, _ := snapshot.DiskUsage(filepath.Join(c.Bundle, "upper"))
		if err := m.Remove(ctx, c.ID, false, false); errdefs.Is(err, errdefs.Conflict) || errdefs.Is(err, errdefs.NotFound) {
			continue // started (or removed) since the list
		} else if err != nil {
			return rep, err
		}
		rep.ContainersDeleted = append(rep.ContainersDeleted, c.ID)
		rep.SpaceReclaimed += uint64(n)
	}
	return rep, nil
}

// Volumes lists named volumes.
func (m *Manager) Volumes() ([]mvolume.Volume, error) {
	ents, err := os.ReadDir(m.cfg.Volumes)
	if err != nil {
		return nil, err
	}
	var out []mvolume.Volume
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		fi, _ := e.Info()
		v := mvolume.Volume{Name: e.Name(), Driver: "local", Scope: "local", Mountpoint: filepath.Join(m.cfg.Volumes, e.Name(), "_data"), Labels: map[string]string{}, Options: map[string]string{}}
		if fi != nil {
			v.CreatedAt = fi.ModTime().UTC().Format(time.RFC3339)
		}
		out = append(out, v)
	}
	return out, nil
}

// Volume is the named volume's record, as docker volume inspect shows it.
func (m *Manager) Volume(name string) (mvolume.Volume, error) {
	vols, err := m.Volumes()
	if err != nil {
		return mvolume.Volume{}, err
	}
	for _, v := range vols {
		if v.Name == name {
			return v, nil
		}
	}
	return mvolume.Volume{}, errdefs.NewNotFound(fmt.Errorf("get %s: no such volume", name))
}

// CreateVolume makes a named volume (anonymous, with a generated name, if
// name is empty); making one that exists is no error, as with Docker.
func (m *Manager) CreateVolume(name, driver string) (mvolume.Volume, error) {
	if driver != "" && driver != "local" {
		return mvolume.Volume{}, errdefs.NewNotImplemented(fmt.Errorf("volume driver %q: Flick has local volumes (volume plugins are out of scope)", driver))
	}
	if name == "" {
		name = newVolumeName()
	}
	if !nameRE().MatchString(name) {
		return mvolume.Volume{}, errdefs.NewInvalidArgument(fmt.Errorf("invalid volume name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
	}
	if _, err := m.volumeDir(name, true); err != nil {
		return mvolume.Volume{}, err
	}
	return m.Volume(name)
}

// VolumeUsers names the containers that mount the volume.
func (m *Manager) VolumeUsers(name string) []string { return m.volumeUsers(name) }

func (m *Manager) volumeUsers(name string) []string {
	all, _ := m.List()
	var users []string
	src := filepath.Join(m.cfg.Volumes, name, "_data")
	for _, c := range all {
		used := false
		for _, mp := range c.Mounts {
			used = used || mp.Name == name || mp.Source == src
		}
		for _, b := range c.HostConfig.Binds { // records from before Mounts
			if s, _, _ := strings.Cut(b, ":"); s == name || s == src {
				used = true
			}
		}
		if used {
			users = append(users, c.Name)
		}
	}
	return users
}

// RemoveVolume deletes a named volume no container uses.
func (m *Manager) RemoveVolume(name string, force bool) error {
	if !nameRE().MatchString(name) {
		return errdefs.NewInvalidArgument(fmt.Errorf("invalid volume name %q", name))
	}
	dir := filepath.Join(m.cfg.Volumes, name)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if force {
			return nil
		}
		return errdefs.NewNotFound(fmt.Errorf("get %s: no such volume", name))
	}
	m.mu.Lock() // as Create: a container being created may take it
	defer m.mu.Unlock()
	if users := m.volumeUsers(name); len(users) > 0 {
		return errdefs.NewConflict(fmt.Errorf("remove %s: volume is in use - %v", name, users))
	}
	return os.RemoveAll(dir)
}

// PruneVolumes removes the volumes no container uses: anonymous ones, and
// named ones too with all (Docker since API 1.42: volume prune -a).
func (m *Manager) PruneVolumes(all bool) (mvolume.PruneReport, error) {
	m.mu.Lock() // as Create: a container being created may take one
	defer m.mu.Unlock()
	var rep mvolume.PruneReport
	vols, err := m.Volumes()
	if err != nil {
		return rep, err
	}
	for _, v := range vols {
		if (!all && !m.anonymous(v.Name)) || len(m.volumeUsers(v.Name)) > 0 {
			continue
		}
		n, _ := snapshot.DiskUsage(filepath.Join(m.cfg.Volumes, v.Name))
		if err := os.RemoveAll(filepath.Join(m.cfg.Volumes, v.Name)); err != nil {
			return rep, err
		}
		rep.VolumesDeleted = append(rep.VolumesDeleted, v.Name)
		rep.SpaceReclaimed += uint64(n)
	}
	return rep, nil
}
