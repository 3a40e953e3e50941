package container

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	mcontainer "github.com/moby/moby/api/types/container"
	mmount "github.com/moby/moby/api/types/mount"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
)

// mounts turns the container's -v binds, --mount and --tmpfs options and
// the volumes its image and config declare into s.Mounts (what init mounts,
// parents before children) and rec.Mounts (what inspect shows), as Docker
// does:
//   - -v SRC:DST binds a host path (made as a directory if missing) or a
//     named volume (made on first use, and filled from the image while
//     empty);
//   - --mount type=bind needs its source to exist; type=volume without a
//     source, -v /path and the image's VOLUMEs get an anonymous volume of
//     their own, removed with the container by rm -v and --rm;
//   - --tmpfs and --mount type=tmpfs are tmpfs mounts, noexec, nosuid and
//     nodev unless asked otherwise.
func (m *Manager) mounts(rec *Record, imageVolumes map[string]struct{}, s *bundle.Spec) error {
	hc, cfg := rec.HostConfig, rec.Config
	taken := map[string]bool{}
	add := func(mt bundle.Mount, mp mcontainer.MountPoint) error {
		t := filepath.Clean(mt.Target)
		if !filepath.IsAbs(t) || t == "/" {
			return errdefs.NewInvalidArgument(fmt.Errorf("invalid mount target %q: the container path must be absolute and not /", mt.Target))
		}
		if taken[t] {
			return errdefs.NewInvalidArgument(fmt.Errorf("duplicate mount point: %s", t))
		}
		taken[t] = true
		mt.Target, mp.Destination = t, t
		s.Mounts = append(s.Mounts, mt)
		rec.Mounts = append(rec.Mounts, mp)
		return nil
	}
	for _, bind := range hc.Binds {
		mt, mp, err := m.parseBind(bind)
		if err != nil {
			return err
		}
		if err := add(mt, mp); err != nil {
			return err
		}
	}
	for _, spec := range hc.Mounts {
		mt, mp, err := m.parseMount(rec, spec)
		if err != nil {
			return err
		}
		if err := add(mt, mp); err != nil {
			return err
		}
	}
	tmpfs := make([]string, 0, len(hc.Tmpfs))
	for dst := range hc.Tmpfs {
		tmpfs = append(tmpfs, dst)
	}
	sort.Strings(tmpfs)
	for _, dst := range tmpfs {
		var opts []string
		if o := hc.Tmpfs[dst]; o != "" {
			opts = strings.Split(o, ",")
		}
		if _, err := bundle.ParseTmpfs(opts); err != nil {
			return errdefs.NewInvalidArgument(fmt.Errorf("--tmpfs %s: %w", dst, err))
		}
		if err := add(bundle.Mount{Target: dst, Tmpfs: true, Options: opts},
			mcontainer.MountPoint{Type: mmount.TypeTmpfs, Mode: hc.Tmpfs[dst], RW: !hasOpt(opts, "ro")}); err != nil {
			return err
		}
	}
	// Anonymous volumes last: a bind or named volume on the same path wins.
	var anon []string
	for _, set := range []map[string]struct{}{imageVolumes, cfg.Volumes} {
		for dst := range set {
			if !taken[filepath.Clean(dst)] {
				anon = append(anon, dst)
			}
		}
	}
	sort.Strings(anon)
	for _, dst := range anon {
		if taken[filepath.Clean(dst)] {
			continue // in both the image and the config
		}
		mt, mp, err := m.anonVolume(rec)
		if err != nil {
			return err
		}
		mt.Target = dst
		if err := add(mt, mp); err != nil {
			return err
		}
	}
	// Parents before children, whatever order they came in.
	sort.SliceStable(s.Mounts, func(i, j int) bool { return depth(s.Mounts[i].Target) < depth(s.Mounts[j].Target) })
	return nil
}

func depth(p string) int { return strings.Count(filepath.Clean(p), "/") }

func hasOpt(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// parseBind parses -v SRC:DST[:OPTS]; a SRC that is not a path is a named
// volume under the data root, made on first use.
func (m *Manager) parseBind(bind string) (bundle.Mount, mcontainer.MountPoint, error) {
	var mp mcontainer.MountPoint
	parts := strings.Split(bind, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return bundle.Mount{}, mp, errdefs.NewInvalidArgument(fmt.Errorf("invalid volume specification: '%s' (want SRC:DST[:ro])", bind))
	}
	src, dst := parts[0], parts[1]
	mt := bundle.Mount{Target: dst}
	if len(parts) == 3 {
		mp.Mode = parts[2]
		for _, o := range strings.Split(parts[2], ",") {
			switch o {
			case "ro":
				mt.ReadOnly = true
			case "rw", "z", "Z", "rprivate", "private":
			case "nocopy":
				if filepath.IsAbs(src) {
					return mt, mp, errdefs.NewInvalidArgument(fmt.Errorf("invalid mode: nocopy in volume '%s': only volumes take it", bind))
				}
			default:
				return mt, mp, errdefs.NewInvalidArgument(fmt.Errorf("invalid mode: %s in volume '%s'", o, bind))
			}
		}
	}
	if !filepath.IsAbs(dst) || filepath.Clean(dst) == "/" {
		return mt, mp, errdefs.NewInvalidArgument(fmt.Errorf("invalid volume specification: '%s': the container path must be absolute and not /", bind))
	}
	mp.RW = !mt.ReadOnly
	if filepath.IsAbs(src) {
		// An existing file or directory is bound as it is (a config file,
		// a socket); a missing one is made as a directory, as Docker does.
		if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(src, 0o755); err != nil {
				return mt, mp, errdefs.NewInvalidArgument(fmt.Errorf("invalid volume source %s: %v", src, err))
			}
		} else if err != nil {
			return mt, mp, errdefs.NewInvalidArgument(fmt.Errorf("invalid volume source %s: %v", src, err))
		}
		mt.Source = filepath.Clean(src)
		mp.Type, mp.Source, mp.Propagation = mmount.TypeBind, mt.Source, mmount.PropagationRPrivate
		return mt, mp, nil
	}
	if !nameRE().MatchString(src) {
		return mt, mp, errdefs.NewInvalidArgument(fmt.Errorf("invalid volume specification: '%s': %q is neither an absolute host path nor a volume name", bind, src))
	}
	dir, err := m.volumeDir(src, true)
	if err != nil {
		return mt, mp, err
	}
	mt.Source, mt.CopyUp = dir, !strings.Contains(mp.Mode, "nocopy")
	mp.Type, mp.Name, mp.Source, mp.Driver = mmount.TypeVolume, src, dir, "local"
	return mt, mp, nil
}

// parseMount reads a --mount (HostConfig.Mounts).
func (m *Manager) parseMount(rec *Record, spec mmount.Mount) (bundle.Mount, mcontainer.MountPoint, error) {
	mt := bundle.Mount{Target: spec.Target, ReadOnly: spec.ReadOnly}
	mp := mcontainer.MountPoint{Type: spec.Type, RW: !spec.ReadOnly}
	if spec.Target == "" {
		return mt, mp, errdefs.NewInvalidArgument(errors.New("invalid mount config: a --mount needs a target (dst=/path)"))
	}
	switch spec.Type {
	case mmount.TypeBind:
		if !filepath.IsAbs(spec.Source) {
			return mt, mp, errdefs.NewInvalidArgument(fmt.Errorf("invalid mount config for type \"bind\": invalid mount path: '%s' mount path must be absolute", spec.Source))
		}
		if _, err := os.Stat(spec.Source); err != nil {
			if spec.BindOptions == nil || !spec.BindOptions.CreateMountpoint || !errors.Is(err, os.ErrNotExist) {
				return mt, mp, errdefs.NewInvalidArgument(fmt.Errorf("invalid mount config for type \"bind\": bind source path does not exist: %s", spec.Source))
			}
			if err := os.MkdirAll(spec.Source, 0o755); err != nil {
				return mt, mp, errdefs.NewInvalidArgument(fmt.Errorf("invalid mount config for type \"bind\": %v", err))
			}
		}
		mt.Source = filepath.Clean(spec.Source)
		mp.Source, mp.Propagation = mt.Source, mmount.PropagationRPrivate
	case mmount.TypeVolume:
		if spec.VolumeOptions != nil && (spec.VolumeOptions.Subpath != "" || spec.VolumeOptions.DriverConfig != nil && spec.VolumeOptions.DriverConfig.Name != "" && spec.VolumeOptions.DriverConfig.Name != "local") {
			return mt, mp, errdefs.NewNotImplemented(errors.New("volume subpaths and volume drivers: Flick has local volumes, mounted whole"))
		}
		nocopy := spec.VolumeOptions != nil && spec.VolumeOptions.NoCopy
		if spec.Source == "" {
			anon, amp, err := m.anonVolume(rec)
			if err != nil {
				return mt, mp, err
			}
			anon.Target, anon.ReadOnly, anon.CopyUp = spec.Target, spec.ReadOnly, !nocopy
			amp.RW = !spec.ReadOnly
			return anon, amp, nil
		}
		if !nameRE().MatchString(spec.Source) {
			return mt, mp, errdefs.NewInvalidArgument(fmt.Errorf("invalid mount config for type \"volume\": invalid volume name %q", spec.Source))
		}
		dir, err := m.volumeDir(spec.Source, true)
		if err != nil {
			return mt, mp, err
		}
		mt.Source, mt.CopyUp = dir, !nocopy
		mp.Name, mp.Source, mp.Driver = spec.Source, dir, "local"
	case mmount.TypeTmpfs:
		if spec.Source != "" {
			return mt, mp, errdefs.NewInvalidArgument(errors.New("invalid mount config for type \"tmpfs\": a tmpfs has no source"))
		}
		mt.Tmpfs = true
		if o := spec.TmpfsOptions; o != nil {
			if o.SizeBytes < 0 {
				return mt, mp, errdefs.NewInvalidArgument(fmt.Errorf("invalid tmpfs size %d", o.SizeBytes))
			}
			if o.SizeBytes > 0 {
				mt.Options = append(mt.Options, "size="+strconv.FormatInt(o.SizeBytes, 10))
			}
			if o.Mode != 0 {
				mode := uint64(o.Mode.Perm())
				if o.Mode&os.ModeSticky != 0 {
					mode |= 0o1000
				}
				mt.Options = append(mt.Options, "mode="+strconv.FormatUint(mode, 8))
			}
		}
		if spec.ReadOnly {
			mt.Options = append(mt.Options, "ro")
		}
	default:
		return mt, mp, errdefs.NewNotImplemented(fmt.Errorf("--mount type=%s: Flick has bind, volume and tmpfs mounts", spec.Type))
	}
	return mt, mp, nil
}

// volumeDir is the data directory of the named volume, made if new; made
// durably (synced before the container that uses it is committed) unless
// only an --rm container uses it.
func (m *Manager) volumeDir(name string, sync bool) (string, error) {
	dir := filepath.Join(m.cfg.Volumes, name, "_data")
	mkdir := os.MkdirAll
	if sync {
		mkdir = durable.MkdirAll
	}
	if err := mkdir(dir, 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

// anonVolume makes a volume for rec alone, named as Docker names them (64
// hex digits), filled from the image at its target while empty.
func (m *Manager) anonVolume(rec *Record) (bundle.Mount, mcontainer.MountPoint, error) {
	name := newVolumeName()
	dir, err := m.volumeDir(name, !rec.HostConfig.AutoRemove)
	if err != nil {
		return bundle.Mount{}, mcontainer.MountPoint{}, err
	}
	// Marked, for volume prune (which takes anonymous ones only, unless
	// -a): a volume created by name, or without one, is not anonymous.
	if err := os.WriteFile(filepath.Join(m.cfg.Volumes, name, anonMark), nil, 0o600); err != nil {
		return bundle.Mount{}, mcontainer.MountPoint{}, err
	}
	rec.AnonVolumes = append(rec.AnonVolumes, name)
	return bundle.Mount{Source: dir, CopyUp: true},
		mcontainer.MountPoint{Type: mmount.TypeVolume, Name: name, Source: dir, Driver: "local", RW: true}, nil
}

// removeAnonVolumes deletes the volumes made for rec alone, unless another
// container mounts one by its name meanwhile. The caller holds m.mu.
func (m *Manager) removeAnonVolumes(rec Record) {
	for _, name := range rec.AnonVolumes {
		if !nameRE().MatchString(name) {
			continue // not one of ours: a record edited by hand
		}
		if users := m.volumeUsers(name); len(users) > 1 || len(users) == 1 && users[0] != rec.Name {
			continue
		}
		if err := os.RemoveAll(filepath.Join(m.cfg.Volumes, name)); err != nil {
			m.log.Warn("remove anonymous volume", "volume", name, "err", err)
		}
	}
}

// anonMark, beside a volume's _data, marks an anonymous volume.
const anonMark = "anonymous"

// anonymous says whether the volume was made for one container alone.
func (m *Manager) anonymous(name string) bool {
	_, err := os.Lstat(filepath.Join(m.cfg.Volumes, name, anonMark))
	return err == nil
}

// newVolumeName is a name as Docker gives volumes made without one: 64 hex
// digits.
func newVolumeName() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// MountsOf is what inspect shows as c's mounts: its record's, or, for a
// container created before records kept them, what its -v binds were.
func (m *Manager) MountsOf(c Container) []mcontainer.MountPoint {
	if c.Mounts != nil || c.HostConfig == nil {
		return c.Mounts
	}
	var out []mcontainer.MountPoint
	for _, b := range c.HostConfig.Binds {
		parts := strings.Split(b, ":")
		if len(parts) < 2 {
			continue
		}
		mp := mcontainer.MountPoint{Destination: parts[1], RW: true}
		if len(parts) == 3 {
			mp.Mode = parts[2]
			mp.RW = !hasOpt(strings.Split(parts[2], ","), "ro")
		}
		if filepath.IsAbs(parts[0]) {
			mp.Type, mp.Source, mp.Propagation = mmount.TypeBind, parts[0], mmount.PropagationRPrivate
		} else {
			mp.Type, mp.Name, mp.Source, mp.Driver = mmount.TypeVolume, parts[0], filepath.Join(m.cfg.Volumes, parts[0], "_data"), "local"
		}
		out = append(out, mp)
	}
	return out
}
