// Package container is the daemon's view of containers: their records
// (name, image, Docker config and host config), turning a create request
// into a runtime spec and bundle, and the lifecycle operations (start,
// stop, kill, restart, remove, wait, logs) on top of the runtime package.
// The running truth lives in each bundle's state.json, written by the
// container's monitor, so the daemon can restart and re-adopt containers.
package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/docker/go-units"
	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/capability"
	"github.com/flick-edge/flick/internal/cgroup"
	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/image"
	"github.com/flick-edge/flick/internal/logfile"
	"github.com/flick-edge/flick/internal/monitor"
	"github.com/flick-edge/flick/internal/network"
	"github.com/flick-edge/flick/internal/snapshot"
	mcontainer "github.com/moby/moby/api/types/container"
	mevents "github.com/moby/moby/api/types/events"
	mnetwork "github.com/moby/moby/api/types/network"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Record is a container as stored in its bundle (container.json).
type Record struct {
	ID         string                 `json:"id"`
	Name       string                 `json:"name"`
	Created    time.Time              `json:"created"`
	Image      string                 `json:"image"` // as the user gave it
	ImageID    digest.Digest          `json:"imageID"`
	Layers     []digest.Digest        `json:"layers"` // diff IDs, bottom first
	Path       string                 `json:"path"`
	Args       []string               `json:"args"`
	Config     *mcontainer.Config     `json:"config"`
	HostConfig *mcontainer.HostConfig `json:"hostConfig"`
	Warnings   []string               `json:"warnings,omitempty"`
	// Mounts are the container's volumes, binds and tmpfs mounts, as
	// inspect shows them; AnonVolumes the volumes made for it alone
	// (removed with it by rm -v and --rm).
	Mounts      []mcontainer.MountPoint `json:"mounts,omitempty"`
	AnonVolumes []string                `json:"anonVolumes,omitempty"`
}

// Container is a record plus its current state.
type Container struct {
	Record
	State  bundle.State
	Bundle string
}

// Status is Docker's state word: created, running, restarting, exited.
func (c Container) Status() string {
	if c.State.Status == "" {
		return "created"
	}
	if c.State.Status != "exited" && !shimAlive(c.State.ShimPid) {
		return "exited"
	}
	return c.State.Status
}

// Running reports whether the application is up.
func (c Container) Running() bool { return c.Status() == "running" || c.Status() == "restarting" }

// Config wires the manager.
type Config struct {
	Root      string // data-root/containers
	Volumes   string // data-root/volumes
	Images    *image.Store
	Snapshots *snapshot.Store
	Logger    *slog.Logger
	LogMax    int64
	LogFiles  int
	// Network returns the bridge network, creating it on first use (nil:
	// no bridge; containers then default to a loopback-only namespace).
	Network func() (*network.Manager, error)
	// WarmMonitors is how many container monitors to keep started ahead
	// of need (from the first container start on).
	WarmMonitors int
	// MonitorBinary and InitBinary are what container monitors and inits
	// run from: the lean binaries internal/helper installs. Empty: flick's
	// own executable.
	MonitorBinary, InitBinary string
	// HelpersErr, if set, says why there are no binaries to run containers
	// with (a build that embeds them runs no container roles itself): starts
	// and execs fail with it.
	HelpersErr error
}

// Manager owns every container.
type Manager struct {
	cfg Config
	log *slog.Logger
	mu  sync.Mutex // serialises create/remove and names

	execs  execs
	events bus

	inUseMu sync.Mutex
	inUse   map[digest.Digest]bool
	inUseAt time.Time

	cacheMu sync.Mutex
	cache   map[string]*cached // by ID; see load

	initLayer string // see ensureInitLayer; "" if it could not be made

	followMu sync.Mutex
	follows  map[string]*followers // by container ID: log followers reading (attach, logs -f)

	mons *monitors

	ops    opLocks      // one start, stop or removal of a container at a time
	notify *notifier    // changes to bundles: Wait, Logs and Watch wait on it instead of polling
	looks  atomic.Int64 // containers read (load): what a poll would show

	// gone keeps the final exit code of containers removed in the last
	// minute, for a wait that finds its container removed before it
	// looked again (another client, or a stop, removed a --rm one).
	goneMu sync.Mutex
	gone   map[string]goneExit
	// restarts counts the restarts in progress by ID: a --rm container is
	// not removed between their stop and start.
	restarts map[string]int

	// startTimeout bounds how long a start waits for its monitor's report
	// (30 s; shorter in tests). The monitor goes on after that: launching.
	startTimeout time.Duration
}

// New opens the container store.
func New(cfg Config) (*Manager, error) {
	if err := durable.MkdirAll(cfg.Root, 0o711); err != nil {
		return nil, err
	}
	// Volumes: root's alone. A volume filled from an image can hold its
	// set-uid files, which a host user must not reach (containers reach
	// their volumes through bind mounts, which need no way through here).
	if err := durable.MkdirAll(cfg.Volumes, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(cfg.Volumes, 0o700); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, cache: map[string]*cached{}, follows: map[string]*followers{},
		mons: newMonitors(cfg.WarmMonitors, cfg.MonitorBinary, cfg.InitBinary, cfg.Logger), notify: newNotifier(cfg.Root, cfg.Logger),
		startTimeout: 30 * time.Second}
	var err error
	if m.initLayer, err = ensureInitLayer(cfg.Root); err != nil {
		// Containers still run: init makes the mount points in each
		// writable layer instead.
		m.log.Warn("no init layer: containers' mount points go to their writable layers", "err", err)
	}
	return m, nil
}

// Close lets the warm monitors go; containers keep running.
func (m *Manager) Close() {
	m.mons.close()
	m.notify.close()
}

func (m *Manager) bundle(id string) string { return filepath.Join(m.cfg.Root, id) }

// List returns every container, newest first.
func (m *Manager) List() ([]Container, error) {
	ents, err := os.ReadDir(m.cfg.Root)
	if err != nil {
		return nil, err
	}
	var out []Container
	for _, e := range ents {
		if !e.IsDir() || len(e.Name()) != 64 {
			continue
		}
		c, err := m.load(e.Name())
		if err != nil {
			m.log.Warn("unreadable container record", "id", e.Name(), "err", err)
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// load reads one container. Its record never changes after create, so it
// is decoded once and cached (callers must not modify what a Container's
// Config and HostConfig point to); its state is re-read only when
// state.json was replaced (the monitor writes it by rename). A poll of
// every container (Watch, ten times a second) then costs two stats each,
// not two reads and two JSON decodes: an idle gateway's daemon used 3% of
// a core with 20 containers.
func (m *Manager) load(id string) (Container, error) {
	m.looks.Add(1)
	b := m.bundle(id)
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(b, "container.json"), &st); err != nil {
		m.forget(id)
		return Container{}, &os.PathError{Op: "stat", Path: filepath.Join(b, "container.json"), Err: err}
	}
	m.cacheMu.Lock()
	ent := m.cache[id]
	m.cacheMu.Unlock()
	if ent == nil || ent.recIno != st.Ino {
		raw, err := os.ReadFile(filepath.Join(b, "container.json"))
		if err != nil {
			return Container{}, err
		}
		ent = &cached{recIno: st.Ino}
		if err := json.Unmarshal(raw, &ent.rec); err != nil {
			return Container{}, err
		}
	}
	var key stateKey
	if err := unix.Stat(filepath.Join(b, bundle.StateFile), &st); err == nil {
		key = stateKey{ino: int64(st.Ino), mtime: st.Mtim.Nano(), size: st.Size, exists: true}
	}
	m.cacheMu.Lock()
	defer m.cacheMu.Unlock()
	if !ent.loaded || ent.key != key {
		ent.state, _ = bundle.ReadState(b)
		ent.key, ent.loaded = key, true
	}
	m.cache[id] = ent
	return Container{Record: ent.rec, Bundle: b, State: ent.state}, nil
}

// cached is one container as last read.
type cached struct {
	rec    Record
	recIno uint64 // which container.json rec was read from (a rename replaces it)
	state  bundle.State
	key    stateKey // which state.json state was read from
	loaded bool
}

type stateKey struct {
	ino, mtime, size int64
	exists           bool
}

func (m *Manager) forget(id string) {
	m.cacheMu.Lock()
	delete(m.cache, id)
	m.cacheMu.Unlock()
}

// Get finds a container by full ID, unique ID prefix or name.
func (m *Manager) Get(ref string) (Container, error) {
	ref = strings.TrimPrefix(ref, "/")
	if ref == "" {
		return Container{}, errdefs.NewInvalidArgument(errors.New("no container name or ID given"))
	}
	if len(ref) == 64 && strings.Trim(ref, "0123456789abcdef") == "" {
		// A full ID (what every poll loop passes): read that container's
		// record alone, not every container's.
		if c, err := m.load(ref); err == nil {
			return c, nil
		}
	}
	all, err := m.List()
	if err != nil {
		return Container{}, err
	}
	for _, c := range all {
		if c.ID == ref || c.Name == ref {
			return c, nil
		}
	}
	var found []Container
	for _, c := range all {
		if strings.HasPrefix(c.ID, ref) {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return Container{}, errNoSuchContainer(ref)
	}
	return Container{}, errdefs.NewInvalidArgument(fmt.Errorf("multiple containers match %q: give more of the ID", ref))
}

var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`) })

var adjectives = []string{"brave", "calm", "eager", "fond", "keen", "lucid", "merry", "nimble", "quiet", "sharp", "swift", "tidy", "vivid", "witty", "zesty"}
var nouns = []string{"lovelace", "turing", "hopper", "noether", "curie", "tesla", "volta", "ohm", "faraday", "maxwell", "kepler", "euler", "gauss", "hertz", "shannon"}

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomName(taken map[string]bool) string {
	for i := 0; ; i++ {
		b := make([]byte, 2)
		rand.Read(b)
		n := adjectives[int(b[0])%len(adjectives)] + "_" + nouns[int(b[1])%len(nouns)]
		if i > 20 {
			n += fmt.Sprintf("%d", i)
		}
		if !taken[n] {
			return n
		}
	}
}

// CreateRequest is what `docker create` sends.
type CreateRequest struct {
	Name       string
	Config     *mcontainer.Config
	HostConfig *mcontainer.HostConfig
}

// Create records a container and prepares its bundle; it does not start it.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (Container, error) {
	if req.Config == nil || req.Config.Image == "" {
		return Container{}, errdefs.NewInvalidArgument(errors.New("no image given: flick run IMAGE [COMMAND]"))
	}
	if req.HostConfig == nil {
		req.HostConfig = &mcontainer.HostConfig{}
	}
	img, err := m.cfg.Images.Resolve(req.Config.Image)
	if err != nil {
		if errdefs.Is(err, errdefs.NotFound) {
			//lint:ignore ST1005 Docker's own wording, which docker CLI users and scripts match
			return Container{}, errdefs.NewNotFound(fmt.Errorf("No such image: %s (pull it first: flick pull %s)", req.Config.Image, req.Config.Image))
		}
		return Container{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	all, err := m.List()
	if err != nil {
		return Container{}, err
	}
	taken := map[string]bool{}
	for _, c := range all {
		taken[c.Name] = true
	}
	name := strings.TrimPrefix(req.Name, "/")
	if name == "" {
		name = randomName(taken)
	} else if !nameRE().MatchString(name) {
		return Container{}, errdefs.NewInvalidArgument(fmt.Errorf("invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
	} else if taken[name] {
		for _, c := range all {
			if c.Name == name {
				//lint:ignore ST1005 Docker's own wording, which docker CLI users and scripts match
				return Container{}, errdefs.NewConflict(fmt.Errorf("Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name", name, c.ID))
			}
		}
	}
	rec := Record{ID: newID(), Name: name, Created: time.Now().UTC(), Image: req.Config.Image, ImageID: img.ID,
		Config: req.Config, HostConfig: req.HostConfig}
	for _, d := range img.Config.Image.RootFS.DiffIDs {
		rec.Layers = append(rec.Layers, digest.Digest(d.String()))
	}
	spec, warnings, err := m.spec(&rec, img)
	if err != nil {
		m.removeAnonVolumes(rec)
		return Container{}, err
	}
	rec.Config = withImageDefaults(rec.Config, img.Config.Image.Config, spec)
	rec.Warnings = warnings
	// The bundle is built under a hidden name and renamed into place whole,
	// so a power cut leaves the container complete or absent (Recover
	// deletes a partial one). A container that outlives its run is synced
	// before the rename: once create has answered, it survives a cut, as a
	// gateway app with --restart must. An --rm one need not.
	b := m.bundle(rec.ID)
	stage := filepath.Join(m.cfg.Root, stagePrefix+rec.ID)
	if err := os.Mkdir(stage, 0o711); err != nil {
		return Container{}, err
	}
	fail := func(err error) (Container, error) {
		os.RemoveAll(stage)
		m.removeAnonVolumes(rec)
		return Container{}, err
	}
	if err := writeEtc(stage, spec, req.HostConfig); err != nil {
		return fail(err)
	}
	if err := bundle.WriteSpec(stage, spec, false); err != nil { // the whole stage is fsynced below
		return fail(err)
	}
	// The log exists from creation on, so a client attached before start
	// holds it open even if the container is removed the moment it exits.
	if err := os.WriteFile(filepath.Join(stage, bundle.LogFile), nil, 0o640); err != nil {
		return fail(err)
	}
	raw, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(stage, "container.json"), raw, 0o600); err != nil {
		return fail(err)
	}
	if req.HostConfig.AutoRemove {
		err = os.Rename(stage, b)
	} else if err = durable.FsyncTree(stage); err == nil {
		err = durable.CommitDir(stage, b)
	}
	if err != nil {
		return fail(fmt.Errorf("create container: %w", err))
	}
	m.notify.watch(rec.ID) // before anybody can start it
	m.inUseMu.Lock()
	m.inUse = nil
	m.inUseMu.Unlock()
	out := Container{Record: rec, Bundle: b}
	m.emit(out, mevents.ActionCreate, nil)
	return out, nil
}

// spec turns a Docker config into a runtime spec, validating as Docker does.
func (m *Manager) spec(rec *Record, img image.Image) (bundle.Spec, []string, error) {
	cfg, hc, ic := rec.Config, rec.HostConfig, img.Config.Image.Config
	var warnings []string
	s := bundle.Spec{ID: rec.ID, LogMax: m.cfg.LogMax, LogFiles: m.cfg.LogFiles, Tty: cfg.Tty, Stdin: cfg.OpenStdin, StdinOnce: cfg.StdinOnce}
	// Entrypoint and command, with Docker's rules: a given entrypoint
	// resets the image's CMD.
	entry, cmd := ic.Entrypoint, ic.Cmd
	if len(cfg.Entrypoint) > 0 {
		entry, cmd = cfg.Entrypoint, nil
		if len(cfg.Entrypoint) == 1 && cfg.Entrypoint[0] == "" {
			entry = nil
		}
	}
	if len(cfg.Cmd) > 0 {
		cmd = cfg.Cmd
	}
	s.Args = append(append([]string{}, entry...), cmd...)
	if len(s.Args) == 0 {
		return s, nil, errdefs.NewInvalidArgument(errors.New("no command specified: the image has no CMD or ENTRYPOINT; give one after the image name"))
	}
	rec.Path, rec.Args = s.Args[0], s.Args[1:]
	s.Env = bundle.MergeEnv(ic.Env, cfg.Env)
	s.Cwd = ic.WorkingDir
	if cfg.WorkingDir != "" {
		s.Cwd = cfg.WorkingDir
	}
	if s.Cwd != "" && !filepath.IsAbs(s.Cwd) {
		return s, nil, errdefs.NewInvalidArgument(fmt.Errorf("the working directory '%s' is invalid, it needs to be an absolute path", s.Cwd))
	}
	s.User = ic.User
	if cfg.User != "" {
		s.User = cfg.User
	}
	s.Hostname = cfg.Hostname
	if s.Hostname == "" {
		s.Hostname = rec.ID[:12]
	}
	if m.initLayer != "" {
		s.Layers = append(s.Layers, m.initLayer)
	}
	for i := len(rec.Layers) - 1; i >= 0; i-- {
		p, err := m.cfg.Snapshots.Path(rec.Layers[i])
		if err != nil {
			return s, nil, err
		}
		s.Layers = append(s.Layers, p)
	}
	switch nm := string(hc.NetworkMode); nm {
	case "host":
		s.Network = "host"
	case "none":
		s.Network = "none"
	case "", "default":
		s.Network = "bridge"
		if m.cfg.Network == nil {
			s.Network = "none" // the daemon runs with --bridge none
		}
	case "bridge":
		if m.cfg.Network == nil {
			return s, nil, errdefs.NewNotFound(errors.New("network bridge not found: this daemon runs with --bridge none"))
		}
		s.Network = "bridge"
	default:
		return s, nil, errdefs.NewNotImplemented(fmt.Errorf("network %q: Flick supports --network none, host (and bridge, coming); user-defined and overlay networks are out of scope", nm))
	}
	hc.NetworkMode = mcontainer.NetworkMode(s.Network) // "default" is recorded as what it is, as Docker does
	if len(hc.PortBindings) > 0 && s.Network == "host" {
		// Docker's answer too: the app's ports are the host's already.
		warnings = append(warnings, "Published ports are discarded when using host network mode")
		hc.PortBindings = nil
	} else if len(hc.PortBindings) > 0 && s.Network != "bridge" {
		return s, nil, errdefs.NewInvalidArgument(fmt.Errorf("port publishing (-p) needs the bridge network; with --network %s the app's ports are unreachable", s.Network))
	}
	if _, err := portMappings(hc); err != nil {
		return s, nil, err
	}
	if err := m.mounts(rec, ic.Volumes, &s); err != nil {
		return s, nil, err
	}
	for _, d := range hc.Devices {
		if _, err := os.Stat(d.PathOnHost); err != nil {
			return s, nil, errdefs.NewInvalidArgument(fmt.Errorf("error gathering device information while adding custom device %q: %v", d.PathOnHost, err))
		}
		ctr := d.PathInContainer
		if ctr == "" {
			ctr = d.PathOnHost
		}
		s.Devices = append(s.Devices, bundle.Device{Host: d.PathOnHost, Container: ctr})
	}
	caps, err := capability.Resolve(hc.CapAdd, hc.CapDrop, hc.Privileged)
	if err != nil {
		return s, nil, errdefs.NewInvalidArgument(err)
	}
	s.Caps, s.Privileged, s.ReadonlyRootfs = caps, hc.Privileged, hc.ReadonlyRootfs
	for _, o := range hc.SecurityOpt {
		if o == "no-new-privileges" || o == "no-new-privileges=true" || o == "no-new-privileges:true" {
			s.NoNewPrivs = true
		} else if v, ok := strings.CutPrefix(o, "seccomp="); ok {
			s.Seccomp = v
		} else if v, ok := strings.CutPrefix(o, "seccomp:"); ok {
			s.Seccomp = v
		}
	}
	if s.Seccomp != "" && s.Seccomp != "unconfined" {
		return s, nil, errdefs.NewNotImplemented(fmt.Errorf("seccomp profile %q: Flick has Docker's default profile and 'unconfined'", s.Seccomp))
	}
	s.Resources = specResources(hc)
	if err := cgroup.Validate(cgroup.Resources(s.Resources)); err != nil {
		return s, nil, err
	}
	for _, u := range hc.Ulimits {
		if u == nil {
			continue
		}
		if _, ok := bundle.RlimitResources[u.Name]; !ok {
			return s, nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid ulimit type: %s", u.Name))
		}
		if u.Soft > u.Hard && u.Hard >= 0 {
			return s, nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid ulimit argument: %s=%d:%d: the soft limit is above the hard one", u.Name, u.Soft, u.Hard))
		}
		s.Rlimits = append(s.Rlimits, bundle.Rlimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	if hc.Init != nil && *hc.Init {
		warnings = append(warnings, "Flick has no --init process yet: the app runs as PID 1 (it must reap the children it spawns)")
	}
	if hc := cfg.Healthcheck; hc != nil && len(hc.Test) > 0 && hc.Test[0] != "NONE" {
		warnings = append(warnings, "Flick does not run health checks (--health-cmd, HEALTHCHECK): the container's health is not reported")
	}
	if lc := hc.LogConfig; lc.Type != "" && lc.Type != "json-file" && lc.Type != "local" {
		return s, nil, errdefs.NewNotImplemented(fmt.Errorf("log driver %q: Flick keeps size-capped json-file logs on the device (cloud log drivers are out of scope)", lc.Type))
	}
	for k, v := range hc.LogConfig.Config {
		switch k {
		case "max-size":
			n, err := units.RAMInBytes(v)
			if err != nil || n < 4096 {
				return s, nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid --log-opt max-size=%s: want a size of at least 4k", v))
			}
			s.LogMax = n
		case "max-file":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 9 {
				return s, nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid --log-opt max-file=%s: want 1 to 9", v))
			}
			s.LogFiles = n
		default:
			return s, nil, errdefs.NewInvalidArgument(fmt.Errorf("unknown log opt '%s' for json-file log driver", k))
		}
	}
	if err := checkRestart(hc.RestartPolicy); err != nil {
		return s, nil, err
	}
	switch p := hc.RestartPolicy; p.Name {
	case "", "no":
	case "always", "unless-stopped", "on-failure":
		s.Restart = specRestart(hc)
		if hc.AutoRemove {
			return s, nil, errdefs.NewInvalidArgument(errors.New("conflicting options: cannot specify both --restart and --rm"))
		}
	default:
		return s, nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid restart policy '%s'", p.Name))
	}
	s.Ephemeral = hc.AutoRemove
	if cfg.Tty {
		s.ConsoleSize = consoleSize(hc.ConsoleSize)
	}
	return s, warnings, nil
}

func writeEtc(bundle string, s bundle.Spec, hc *mcontainer.HostConfig) error {
	if err := os.WriteFile(filepath.Join(bundle, "hostname"), []byte(s.Hostname+"\n"), 0o644); err != nil {
		return err
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + s.Hostname + "\n"
	for _, h := range hc.ExtraHosts {
		name, ip, ok := strings.Cut(h, ":")
		if !ok {
			return errdefs.NewInvalidArgument(fmt.Errorf("invalid --add-host %q: want host:ip", h))
		}
		hosts += ip + "\t" + name + "\n"
	}
	if err := os.WriteFile(filepath.Join(bundle, "hosts"), []byte(hosts), 0o644); err != nil {
		return err
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		resolv = nil
	}
	if s.Network != "host" {
		// A resolver on the host's loopback (systemd-resolved's 127.0.0.53)
		// is unreachable from the container's own namespace: drop it, and
		// fall back to public resolvers as Docker does if none is left.
		var kept []string
		servers := 0
		for _, l := range strings.Split(string(resolv), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "nameserver" {
				if a, err := netip.ParseAddr(f[1]); err == nil && a.IsLoopback() {
					continue
				}
				servers++
			}
			kept = append(kept, l)
		}
		resolv = []byte(strings.Join(kept, "\n"))
		if servers == 0 && s.Network == "bridge" {
			resolv = append(resolv, "\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"...)
		}
	}
	if len(hc.DNS) > 0 {
		resolv = nil
		for _, d := range hc.DNS {
			resolv = append(resolv, "nameserver "+d.String()+"\n"...)
		}
	}
	return os.WriteFile(filepath.Join(bundle, "resolv.conf"), resolv, 0o644)
}

func shimAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmdline), "__shim")
}

// Start launches the container's monitor and waits until the application
// runs or its start failed (then the error says why, and exit code 125-127).
func (m *Manager) Start(ctx context.Context, ref string) error {
	c, unlock, err := m.getLocked(ctx, ref)
	if err != nil {
		return err
	}
	defer func() { unlock() }()
	if c.Status() == "exited" && !m.settled(c) {
		// Its monitor recorded an exit and has not reported the end: it
		// is about to restart the container (a restart policy) or to end
		// (an earlier daemon's monitor may still be removing the cgroup it
		// ran the container in, which the one made now must not be). A
		// second monitor must not start it meanwhile.
		if c, err = m.awaitSettled(ctx, c, 10*time.Second, true); err != nil {
			return err
		}
		if !c.Running() && !m.settled(c) {
			return errdefs.NewConflict(fmt.Errorf("container %s: its monitor is still restarting or stopping it: try again", c.Name))
		}
	}
	if c.Running() {
		return nil // Docker: starting a running container is a no-op
	}
	if m.launching(c) != nil {
		// A start that gave up waiting for its monitor: a second monitor
		// must not start the container beside it.
		return errdefs.NewConflict(fmt.Errorf("container %s: its monitor is still starting it (it did not report within %s): try again, or remove it with 'rm -f'", c.Name, m.startTimeout))
	}
	if m.cfg.HelpersErr != nil {
		return errdefs.NewUnavailable(m.cfg.HelpersErr)
	}
	if err := ctx.Err(); err != nil { // the client left while we waited for the lock
		return err
	}
	if err := os.Remove(filepath.Join(c.Bundle, bundle.StopFile)); err == nil {
		// Started again by hand: a restart policy applies again after a
		// reboot, so the stop mark must stay gone.
		if err := durable.FsyncDir(c.Bundle); err != nil {
			return err
		}
	}
	os.Remove(filepath.Join(c.Bundle, bundle.StateFile))
	// A --rm container that cannot start goes at once, as Docker's: its
	// client waits for the removal.
	failed := func(err error) error {
		if c.HostConfig != nil && c.HostConfig.AutoRemove {
			// Attached clients read the reason to its end first.
			m.awaitFollowers(ctx, c.ID, 2*time.Second)
			if rerr := m.removeSettled(c, true); rerr != nil {
				m.log.Warn("remove a --rm container that failed to start", "id", c.ID, "err", rerr)
			}
		}
		return err
	}
	spec, err := m.attachNetwork(c)
	if err != nil {
		return failed(err)
	}
	m.expectStart(c.ID)
	mo, err := m.mons.launch(c.Bundle, spec)
	if err != nil {
		return failed(err)
	}
	deadline := time.Now().Add(m.startTimeout)
	timeout := time.NewTimer(m.startTimeout)
	defer timeout.Stop()
	select {
	case <-mo.started:
	case <-ctx.Done():
		// The client left, the start goes on: the lock stays taken until
		// the monitor reports (or the start's time is up), so that nothing
		// removes the container under it. The timer is the goroutine's
		// own: the one above stops when Start returns.
		held := unlock
		unlock = func() {}
		go func() {
			defer held()
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			select {
			case <-mo.started:
				m.mons.refillSoon()
			case <-mo.gone:
			case <-t.C:
			}
		}()
		return ctx.Err()
	case <-timeout.C:
	}
	// The next start's monitor warms up while this container runs.
	m.mons.refillSoon()
	// state.json has the outcome; a monitor that ended without writing it
	// (it could not read its spec) is reported with its log.
	st, err := bundle.ReadState(c.Bundle)
	switch {
	case err == nil && st.Status != "":
		if st.Error != "" {
			if st.Status == "exited" && m.awaitMonitor(ctx, mo) {
				return failed(startError(st))
			}
			return startError(st)
		}
		return nil
	}
	select {
	case <-mo.gone:
		log, _ := os.ReadFile(filepath.Join(c.Bundle, bundle.ShimLogFile))
		return failed(fmt.Errorf("container %s: %w: %s", c.Name, errMonitorGone, strings.TrimSpace(string(log))))
	default:
		return errdefs.NewUnavailable(fmt.Errorf("container %s did not start within %s", c.Name, m.startTimeout))
	}
}

// awaitMonitor waits, briefly, for a monitor that reported a failed start
// to settle (it reports the exit right after), so that the container can go.
func (m *Manager) awaitMonitor(ctx context.Context, mo *monitorProc) bool {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-mo.exited:
		return true
	case <-mo.gone:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func startError(st bundle.State) error {
	err := fmt.Errorf("failed to create task for container: failed to create shim task: OCI runtime create failed: %s", st.Error)
	switch st.ExitCode {
	case 126, 127:
		return errdefs.NewInvalidArgument(err)
	}
	return err
}

// signal sends sig to the container's application.
func signal(c Container, sig syscall.Signal) error {
	if c.State.Pid <= 0 {
		return errdefs.NewConflict(fmt.Errorf("container %s is not running", c.Name))
	}
	if err := syscall.Kill(c.State.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// Stop asks the application to exit (SIGTERM, or the image's stop signal),
// waits up to timeout, then kills it. A stopped container is not restarted.
func (m *Manager) Stop(ctx context.Context, ref string, timeout time.Duration) error {
	// Locked while it marks and signals (a start must not come in
	// between), not while it waits: a `rm -f` during a long stop timeout
	// kills at once, as Docker's does.
	c, unlock, err := m.getLocked(ctx, ref)
	if err != nil {
		return err
	}
	defer unlock() // released before the wait below; a second release is nothing
	if err := markStopped(c.Bundle); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	if !c.Running() {
		mo := m.launching(c)
		if mo == nil {
			return nil
		}
		// A start that gave up waiting for its monitor, which may start
		// the app yet (the mark above cannot stop a warm init the daemon
		// released): the app is stopped once it runs, and a monitor that
		// outlives the timeout is killed, as an app would be.
		unlock()
		t := time.NewTimer(timeout)
		select {
		case <-mo.started:
		case <-mo.gone:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		if err := ctx.Err(); err != nil {
			return err
		}
		if c, err = m.Get(c.ID); err != nil {
			return nil // removed meanwhile
		}
		deadline = time.Now().Add(timeout) // the app's grace starts when it runs
		if !c.Running() {
			if m.launching(c) == nil {
				return nil // it failed to start, or the app ran and ended
			}
			m.killMonitor(c)
			if !m.waitShim(ctx, c, 10*time.Second) {
				return errdefs.NewUnavailable(fmt.Errorf("container %s did not stop", c.Name))
			}
			return nil
		}
	}
	sig := syscall.SIGTERM
	if s := c.Config.StopSignal; s != "" {
		if n, ok := signalByName(s); ok {
			sig = n
		}
	}
	signal(c, sig)
	unlock()
	if !m.waitShim(ctx, c, time.Until(deadline)) {
		c, _ = m.Get(c.ID)
		signal(c, syscall.SIGKILL)
		if !m.waitShim(ctx, c, 10*time.Second) {
			return errdefs.NewUnavailable(fmt.Errorf("container %s did not stop", c.Name))
		}
	}
	m.observeNow(c.ID)
	m.emit(c, mevents.ActionStop, nil)
	m.removeStopped(ctx, c)
	return nil
}

// Restart stops the container and starts it again. A --rm container is
// not removed in between, as with Docker's restart.
func (m *Manager) Restart(ctx context.Context, ref string, timeout time.Duration) error {
	c, err := m.Get(ref)
	if err != nil {
		return err
	}
	m.goneMu.Lock()
	if m.restarts == nil {
		m.restarts = map[string]int{}
	}
	m.restarts[c.ID]++
	m.goneMu.Unlock()
	defer func() {
		m.goneMu.Lock()
		if m.restarts[c.ID]--; m.restarts[c.ID] == 0 {
			delete(m.restarts, c.ID)
		}
		m.goneMu.Unlock()
	}()
	if err := m.Stop(ctx, c.ID, timeout); err != nil {
		return err
	}
	if err := m.Start(ctx, c.ID); err != nil {
		return err
	}
	m.observeNow(c.ID)
	m.emit(c, mevents.ActionRestart, nil)
	return nil
}

// restarting says whether a restart of the container is in progress.
func (m *Manager) restarting(id string) bool {
	m.goneMu.Lock()
	defer m.goneMu.Unlock()
	return m.restarts[id] > 0
}

// removeStopped removes a --rm container that stop or kill ended, before
// they return: `stop app && run --name app ...` must find the name free
// (Docker's removal happens after its stop returns, and that script fails
// there now and then). Attached clients first read the log to its end.
func (m *Manager) removeStopped(ctx context.Context, c Container) {
	if c.HostConfig == nil || !c.HostConfig.AutoRemove || m.restarting(c.ID) {
		return
	}
	m.awaitFollowers(ctx, c.ID, 2*time.Second)
	if err := m.Remove(ctx, c.ID, false, false); err != nil && !errdefs.Is(err, errdefs.NotFound) && !errdefs.Is(err, errdefs.Conflict) {
		m.log.Warn("remove a stopped --rm container", "name", c.Name, "err", err)
	}
}

// waitShim waits, at most d, until c's monitor has settled (so state.json
// is final).
func (m *Manager) waitShim(ctx context.Context, c Container, d time.Duration) bool {
	c, err := m.awaitSettled(ctx, c, d, false)
	if err != nil {
		return errdefs.Is(err, errdefs.NotFound) // removed: nothing runs it
	}
	return m.settled(c)
}

// Kill sends a signal (default SIGKILL); KILL and TERM also mark the
// container stopped, so the restart policy leaves it down.
func (m *Manager) Kill(ctx context.Context, ref, sigName string) error {
	// Locked: a kill during a start waits for the app and kills it (as
	// Docker's does), rather than finding nothing to kill.
	c, unlock, err := m.getLocked(ctx, ref)
	if err != nil {
		return err
	}
	defer unlock()
	sig := syscall.SIGKILL
	if sigName != "" {
		s, ok := signalByName(sigName)
		if !ok {
			return errdefs.NewInvalidArgument(fmt.Errorf("invalid signal: %s", sigName))
		}
		sig = s
	}
	if !c.Running() {
		return errdefs.NewConflict(fmt.Errorf("cannot kill container: %s: container %s is not running", ref, c.ID))
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		markStopped(c.Bundle)
	}
	m.emit(c, mevents.ActionKill, map[string]string{"signal": strconv.Itoa(int(sig))})
	return signal(c, sig)
}

// Remove deletes a container; a running one only with force (killed first).
func (m *Manager) Remove(ctx context.Context, ref string, force, volumes bool) error {
	c, unlock, err := m.getLocked(ctx, ref)
	if err != nil {
		return err
	}
	defer unlock()
	// Its monitor may have recorded the exit and not yet reported it (or,
	// adopted, be tidying up): a removal right after a die event waits for
	// that, briefly, rather than refusing.
	if c.Status() == "exited" && !m.settled(c) {
		if c, err = m.awaitSettled(ctx, c, 2*time.Second, true); err != nil {
			return err
		}
	}
	// Running, or its monitor may yet run it: a start that gave up waiting
	// (its client left, or 30 s passed), a restart policy's back-off.
	if c.Running() || !m.settled(c) {
		if !force {
			if c.Status() == "exited" {
				return errdefs.NewConflict(fmt.Errorf("cannot remove container %q: its monitor is still restarting or starting it: stop the container before removing or force remove", "/"+c.Name))
			}
			return errdefs.NewConflict(fmt.Errorf("cannot remove container %q: container is running: stop the container before removing or force remove", "/"+c.Name))
		}
		markStopped(c.Bundle) // no restart
		for deadline, begun := time.Now().Add(30*time.Second), time.Now(); ; {
			signal(c, syscall.SIGKILL) // its app, once it has one
			if c.State.Pid <= 0 && time.Since(begun) > 2*time.Second {
				// No app to kill after 2 s: a launch that hangs (a mount
				// that blocks). The monitor and the container's init are
				// its process group; the init's end ends the container.
				m.killMonitor(c)
			}
			if c, err = m.awaitSettled(ctx, c, time.Second, false); err != nil {
				return err
			}
			if m.settled(c) {
				break
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				return errdefs.NewUnavailable(fmt.Errorf("container %s did not stop", c.Name))
			}
		}
	}
	return m.removeSettled(c, volumes)
}

// Rename gives a container a new name (docker rename).
func (m *Manager) Rename(ctx context.Context, ref, name string) error {
	name = strings.TrimPrefix(name, "/")
	if !nameRE().MatchString(name) {
		return errdefs.NewInvalidArgument(fmt.Errorf("invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
	}
	c, unlock, err := m.getLocked(ctx, ref)
	if err != nil {
		return err
	}
	defer unlock()
	m.mu.Lock() // as Create: names are checked and taken under it
	defer m.mu.Unlock()
	if c.Name == name {
		return errdefs.NewInvalidArgument(fmt.Errorf("renaming a container with the same name as its current name"))
	}
	all, err := m.List()
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.Name == name {
			//lint:ignore ST1005 Docker's own wording, which docker CLI users and scripts match
			return errdefs.NewConflict(fmt.Errorf("Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name", name, o.ID))
		}
	}
	old := c.Name
	c.Record.Name = name
	if err := m.writeRecord(c.Bundle, c.Record); err != nil {
		return fmt.Errorf("rename container %s: %w", old, err)
	}
	m.emit(c, mevents.ActionRename, map[string]string{"oldName": "/" + old})
	return nil
}

type goneExit struct {
	code int
	at   time.Time
}

// exitOfRemoved is the final exit code of a container removed in the last
// minute.
func (m *Manager) exitOfRemoved(id string) (int, bool) {
	m.goneMu.Lock()
	defer m.goneMu.Unlock()
	g, ok := m.gone[id]
	return g.code, ok
}

func (m *Manager) recordRemoved(c Container) {
	m.goneMu.Lock()
	defer m.goneMu.Unlock()
	if m.gone == nil {
		m.gone = map[string]goneExit{}
	}
	now := time.Now()
	for id, g := range m.gone {
		if now.Sub(g.at) > time.Minute {
			delete(m.gone, id)
		}
	}
	m.gone[c.ID] = goneExit{c.State.ExitCode, now}
}

// removeSettled removes c, whose monitor (if any) has settled, with the
// container's lock held.
func (m *Manager) removeSettled(c Container, volumes bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, err := m.load(c.ID); err == nil {
		m.observeOne(cur) // its start and death, if no tick saw them yet
		c.State = cur.State
	}
	if err := m.detachNetwork(c); err != nil {
		return err
	}
	if err := m.removeBundle(c); err != nil {
		return fmt.Errorf("remove container %s: %w", c.Name, err)
	}
	m.recordRemoved(c)
	if volumes || (c.HostConfig != nil && c.HostConfig.AutoRemove) {
		// As Docker: rm -v, and --rm, take the anonymous volumes along;
		// named ones stay.
		m.removeAnonVolumes(c.Record)
	}
	m.forget(c.ID)
	m.mons.forget(c.ID)
	m.emit(c, mevents.ActionDestroy, nil)
	return nil
}

// getLocked resolves ref and takes the container's operation lock (or
// gives up when ctx ends), then reads the container again: its state is
// the one the operation acts on.
func (m *Manager) getLocked(ctx context.Context, ref string) (Container, func(), error) {
	c, err := m.Get(ref)
	if err != nil {
		return Container{}, nil, err
	}
	unlock, err := m.ops.lock(ctx, c.ID)
	if err != nil {
		return Container{}, nil, err
	}
	cur, err := m.load(c.ID)
	if errors.Is(err, fs.ErrNotExist) { // removed while we waited
		err = errNoSuchContainer(ref)
	}
	if err != nil {
		unlock()
		return Container{}, nil, err
	}
	return cur, unlock, nil
}

func errNoSuchContainer(ref string) error {
	//lint:ignore ST1005 Docker's own wording, which docker CLI users and scripts match
	return errdefs.NewNotFound(fmt.Errorf("No such container: %s", ref))
}

// awaitSettled waits, at most d, until c's monitor settles (see settled)
// or, with moved, until c's state is no longer "exited" either (a restart
// policy's monitor writes "restarting"), looking again at each change of
// its state and at its monitor's report or end. It returns the container
// as it is then.
func (m *Manager) awaitSettled(ctx context.Context, c Container, d time.Duration, moved bool) (Container, error) {
	deadline := time.Now().Add(d)
	for {
		changed := m.notify.changed(c.ID) // before the look
		cur, err := m.load(c.ID)
		if errors.Is(err, fs.ErrNotExist) {
			return c, errNoSuchContainer(c.ID)
		} else if err != nil {
			return c, err
		}
		c = cur
		left := time.Until(deadline)
		if m.settled(c) || (moved && c.Status() != "exited") || left <= 0 || ctx.Err() != nil {
			return c, nil
		}
		if changed == nil {
			left = min(left, 50*time.Millisecond) // no inotify: a poll
		}
		end, stop := m.monitorEnd(c)
		t := time.NewTimer(left)
		select {
		case <-end:
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		stop()
	}
}

// killMonitor is the last resort of a forced removal whose container has
// no app to kill: it kills what is in the container's cgroup (an init
// that hangs), then the monitor (a session leader: its process group). An
// init still waiting ends when its monitor does.
func (m *Manager) killMonitor(c Container) {
	if cg, err := cgroup.Open(c.ID); err == nil {
		cg.KillAll()
	}
	pid := c.State.ShimPid
	if mo := m.mons.of(c.ID); mo != nil {
		select {
		case <-mo.gone:
			return // reaped: its pid may be another process's now
		default:
		}
		pid = mo.cmd.Process.Pid
	} else if !shimAlive(pid) {
		return
	}
	if pid > 0 {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// Wait blocks until the container is not running (condition "not-running",
// the default) or has been removed ("removed"), and returns the exit code.
func (m *Manager) Wait(ctx context.Context, ref, condition string) (int, error) {
	wait, err := m.PrepareWait(ref, condition)
	if err != nil {
		return 0, err
	}
	return wait(ctx)
}

// PrepareWait looks at the container now, for a wait that begins now and
// is done by the function it returns: the API answers the wait's header
// before it waits, and a client (docker start -a) starts the container
// once it has the header, so the look must come first.
func (m *Manager) PrepareWait(ref, condition string) (func(context.Context) (int, error), error) {
	c, err := m.Get(ref)
	if err != nil {
		return nil, err
	}
	// next-exit on a container that is down: the end of another run than
	// the one seen now (told apart by its times, not by a comparison of
	// clocks, which a gateway without a clock battery sets back at boot).
	newRun := condition == "next-exit" && c.Status() == "exited" && m.settled(c)
	base := c.State
	return func(ctx context.Context) (int, error) { return m.wait(ctx, c, condition, newRun, base) }, nil
}

func (m *Manager) wait(ctx context.Context, c Container, condition string, newRun bool, base bundle.State) (int, error) {
	// The monitor's exit report, once it is launched (a client waits
	// before it starts the container).
	var woke <-chan struct{}
	stop := func() {}
	defer func() { stop() }()
	for {
		// Subscribed before the look, so that a change in between wakes
		// us: the monitor renames each new state.json in.
		changed := m.notify.changed(c.ID)
		cur, err := m.Get(c.ID)
		if err != nil {
			if condition == "removed" && errdefs.Is(err, errdefs.NotFound) {
				if code, ok := m.exitOfRemoved(c.ID); ok {
					return code, nil
				}
				return c.State.ExitCode, nil
			}
			return 0, err
		}
		c = cur
		sameRun := newRun && cur.State.StartedAt.Equal(base.StartedAt) && cur.State.FinishedAt.Equal(base.FinishedAt)
		if cur.Status() == "exited" && m.settled(cur) && !sameRun {
			if again, err := m.Get(c.ID); err == nil {
				cur = again // the final state, not the one read before the report
			}
			if condition != "removed" {
				return cur.State.ExitCode, nil
			}
			if cur.HostConfig != nil && cur.HostConfig.AutoRemove && !m.restarting(cur.ID) {
				// Remove now rather than at the watcher's next tick, once
				// the attached clients have read the log to its end (a
				// container that fails at once, say for a missing user,
				// would otherwise lose its error message with its bundle).
				m.awaitFollowers(ctx, cur.ID, 2*time.Second)
				if err := m.Remove(ctx, cur.ID, false, false); err == nil || errdefs.Is(err, errdefs.NotFound) {
					return cur.State.ExitCode, nil
				}
			}
		}
		if condition == "next-exit" {
			condition = "" // after the first observation, like not-running
		}
		exited := m.exitedCh(c.ID)
		if exited == woke {
			exited = nil
		}
		stop()
		var gone <-chan struct{}
		gone, stop = nil, func() {}
		if exited == nil {
			gone, stop = m.monitorEnd(cur)
		}
		// A fallback only: without inotify this is the poll.
		poll := time.Second
		if changed == nil {
			poll = 50 * time.Millisecond
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-exited:
			woke = exited // reported final: look again at once
		case <-changed:
		case <-gone:
		case <-t.C:
		}
		t.Stop()
	}
}

// Logs streams a container's log entries.
func (m *Manager) Logs(ctx context.Context, ref string, follow bool, fn func(logfile.Entry) error) error {
	c, err := m.Get(ref)
	if err != nil {
		return err
	}
	done := func() bool {
		cur, err := m.Get(c.ID)
		return err != nil || (cur.Status() == "exited" && m.settled(cur))
	}
	if follow {
		defer m.Follow(c.ID)()
	}
	return logfile.Read(ctx, filepath.Join(c.Bundle, bundle.LogFile), logfile.Follow{
		On:      follow,
		Done:    done,
		Exited:  func() <-chan struct{} { return m.exitedCh(c.ID) },
		Changed: func() <-chan struct{} { return m.notify.changed(c.ID) },
		Written: func() <-chan struct{} { return m.notify.written(c.ID) },
		Ended: func() (<-chan struct{}, func()) {
			cur, err := m.load(c.ID)
			if err != nil {
				return nil, func() {}
			}
			return m.monitorEnd(cur)
		},
	}, fn)
}

// Follow counts a log follower of container id until the returned func
// is called: a --rm container's removal waits (at most 2 s) for its
// followers to read the log to the end. An attach takes it before it
// answers the client, which may then start the container: the container
// can exit and be removed before the attach's follower has begun.
// AwaitRun waits until the container has started after since (docker
// start -a attaches to a stopped container, then starts it): a run that
// started and ended meanwhile counts.
func (m *Manager) AwaitRun(ctx context.Context, id string, since time.Time) error {
	for {
		changed := m.notify.changed(id) // before the look
		c, err := m.load(id)
		if errors.Is(err, fs.ErrNotExist) {
			return errNoSuchContainer(id)
		} else if err != nil {
			return err
		}
		if c.State.StartedAt.After(since) {
			return nil
		}
		poll := time.Second
		if changed == nil {
			poll = 50 * time.Millisecond
		}
		t := time.NewTimer(poll)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

func (m *Manager) Follow(id string) (release func()) {
	m.followMu.Lock()
	f := m.follows[id]
	if f == nil {
		f = &followers{done: make(chan struct{})}
		m.follows[id] = f
		m.notify.follow(id, true) // its log's writes wake the followers
	}
	f.n++
	m.followMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.followMu.Lock()
			defer m.followMu.Unlock()
			if f.n--; f.n == 0 {
				delete(m.follows, id)
				m.notify.follow(id, false)
				close(f.done)
			}
		})
	}
}

// followers counts one container's log followers; done closes when the
// last is done.
type followers struct {
	n    int
	done chan struct{}
}

// awaitFollowers waits, at most max, until no log follower of the
// container is reading any more.
func (m *Manager) awaitFollowers(ctx context.Context, id string, max time.Duration) {
	m.followMu.Lock()
	f := m.follows[id]
	m.followMu.Unlock()
	if f == nil {
		return
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-f.done:
	case <-t.C:
	case <-ctx.Done():
	}
}

var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "KILL": syscall.SIGKILL,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM, "STOP": syscall.SIGSTOP,
	"CONT": syscall.SIGCONT, "WINCH": syscall.SIGWINCH, "PWR": syscall.SIGPWR,
}

func signalByName(s string) (syscall.Signal, bool) {
	s = strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if sig, ok := signals[s]; ok {
		return sig, true
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), true
	}
	return 0, false
}

// UsesLayer reports whether any container's root filesystem is built on
// the layer, so image GC keeps it. The set is rebuilt at most once a second.
func (m *Manager) UsesLayer(d digest.Digest) bool {
	m.inUseMu.Lock()
	defer m.inUseMu.Unlock()
	if m.inUse == nil || time.Since(m.inUseAt) > time.Second {
		set := map[digest.Digest]bool{}
		all, _ := m.List()
		for _, c := range all {
			for _, l := range c.Layers {
				set[l] = true
			}
		}
		m.inUse, m.inUseAt = set, time.Now()
	}
	return m.inUse[d]
}

// dialControl connects to the container's monitor, waiting (bounded by
// ctx) for a monitor that is still starting.
func (m *Manager) dialControl(ctx context.Context, id string, h monitor.Control) (net.Conn, error) {
	addr := &net.UnixAddr{Name: monitor.ControlSocket(id), Net: "unix"}
	for {
		conn, err := net.DialUnix("unix", nil, addr)
		if err == nil {
			b, _ := json.Marshal(h)
			if _, err := conn.Write(append(b, '\n')); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		}
		c, gerr := m.Get(id)
		if gerr != nil || (c.Status() == "exited" && m.settled(c)) {
			return nil, errdefs.NewConflict(fmt.Errorf("container %s is not running", id))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// AttachStdin streams r into the container's stdin (the container must
// have been created with -i or -t); it waits for a container still being
// started.
func (m *Manager) AttachStdin(ctx context.Context, ref string, r io.Reader) error {
	c, err := m.Get(ref)
	if err != nil {
		return err
	}
	if !c.Config.OpenStdin && !c.Config.Tty {
		return errdefs.NewInvalidArgument(fmt.Errorf("container %s was not created with -i", c.Name))
	}
	conn, err := m.dialControl(ctx, c.ID, monitor.Control{Type: "stdin"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = io.Copy(conn, r)
	return err
}

// Resize sets the container's terminal size.
func (m *Manager) Resize(ctx context.Context, ref string, h, w uint16) error {
	c, err := m.Get(ref)
	if err != nil {
		return err
	}
	if !c.Config.Tty {
		return errdefs.NewConflict(fmt.Errorf("container %s has no terminal (-t)", c.Name))
	}
	if !c.Running() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := m.dialControl(ctx, c.ID, monitor.Control{Type: "resize", Height: h, Width: w})
	if err != nil {
		return err
	}
	return conn.Close()
}

// ImageUser names a container created from the image, "" if none.
func (m *Manager) ImageUser(id digest.Digest) string {
	all, _ := m.List()
	for _, c := range all {
		if c.ImageID == id {
			return c.Name
		}
	}
	return ""
}

// consoleSize is a client's [rows, columns] as a terminal size; zero (the
// kernel's default) when either is missing or out of range.
func consoleSize(hw [2]uint) [2]uint16 {
	if hw[0] == 0 || hw[1] == 0 || hw[0] > 0xffff || hw[1] > 0xffff {
		return [2]uint16{}
	}
	return [2]uint16{uint16(hw[0]), uint16(hw[1])}
}

// stagePrefix names a bundle being created (durable.TrashPrefix one being
// removed). Recover deletes both.
const stagePrefix = ".new-"

// markStopped records that the user stopped the container, durably: after
// a power cut an unless-stopped container must stay down.
func markStopped(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, bundle.StopFile), nil, 0o600); err != nil {
		return err
	}
	return durable.FsyncDir(dir)
}

// removeBundle deletes a container's bundle, renamed away first so a power
// cut never leaves half a container that lists but cannot start; fsynced
// unless the container was --rm, whose files are deleted after the
// request has its answer.
func (m *Manager) removeBundle(c Container) error {
	if c.HostConfig != nil && c.HostConfig.AutoRemove {
		return durable.DiscardInBackground(c.Bundle, func(err error) {
			if err != nil {
				m.log.Warn("delete removed container's files", "id", c.ID, "err", err)
			}
		})
	}
	return durable.RemoveAll(c.Bundle)
}

// withImageDefaults is the container's config as Docker records it: what
// was not given comes from the image (environment, command, entrypoint,
// working directory, user, labels, exposed ports, volumes, stop signal),
// so that inspect shows what the container runs with.
func withImageDefaults(cfg *mcontainer.Config, ic ocispec.ImageConfig, s bundle.Spec) *mcontainer.Config {
	out := *cfg
	out.Env = s.Env
	if len(out.Entrypoint) == 0 {
		out.Entrypoint = ic.Entrypoint
		if len(out.Cmd) == 0 {
			out.Cmd = ic.Cmd
		}
	}
	if out.WorkingDir == "" {
		out.WorkingDir = ic.WorkingDir
	}
	if out.User == "" {
		out.User = ic.User
	}
	if out.StopSignal == "" {
		out.StopSignal = ic.StopSignal
	}
	if out.Hostname == "" {
		out.Hostname = s.Hostname
	}
	if len(ic.Labels) > 0 {
		labels := map[string]string{}
		for k, v := range ic.Labels {
			labels[k] = v
		}
		for k, v := range cfg.Labels {
			labels[k] = v
		}
		out.Labels = labels
	}
	for p := range ic.ExposedPorts {
		if out.ExposedPorts == nil {
			out.ExposedPorts = mnetwork.PortSet{}
		}
		if port, err := mnetwork.ParsePort(p); err == nil {
			out.ExposedPorts[port] = struct{}{}
		}
	}
	for v := range ic.Volumes {
		if out.Volumes == nil {
			out.Volumes = map[string]struct{}{}
		}
		out.Volumes[v] = struct{}{}
	}
	return &out
}
