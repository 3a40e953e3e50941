// Package cgroup gives each container its own cgroup and controls its resources
// (memory, swap, CPU quota and shares, pids), on cgroup v1 (including hybrid hosts,
// which behave as v1 for the controllers) and on cgroup v2, through the fs and fs2
// managers of github.com/opencontainers/cgroups. No systemd.
//
// Layout: v1 /sys/fs/cgroup/<controller>/flick/<id>; v2 /sys/fs/cgroup/flick/<id>,
// with cpu, memory and pids enabled in cgroup.subtree_control of the root and of
// flick. The root, the parent name and the mode are options, for tests.
package cgroup

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/errdefs"
)

const (
	// DefaultRoot is where the cgroup filesystems are mounted.
	DefaultRoot = "/sys/fs/cgroup"
	// DefaultParent is the cgroup under which every container's cgroup lives.
	DefaultParent = "flick"

	cfsPeriod      = 100000 // µs, as Docker
	minMemory      = 6 << 20
	minCPUShares   = 2
	maxCPUShares   = 262144
	defaultShares  = 1024
	killTimeout    = 10 * time.Second
	unlimitedFloor = 1 << 62 // v1 reports "no limit" as 9223372036854771712
)

// Resources are a container's limits, with Docker's meaning.
type Resources struct {
	// MemoryBytes is --memory; 0 (or -1) means unlimited. At least 6 MiB, as Docker.
	MemoryBytes int64
	// MemorySwapBytes is --memory-swap, memory plus swap, as Docker: 0 (unset) means
	// twice MemoryBytes where the kernel accounts swap (else no swap limit); -1 means
	// unlimited swap; a positive value must be >= MemoryBytes and needs MemoryBytes.
	MemorySwapBytes int64
	// CPUs is --cpus: CFS quota = CPUs * 100ms per 100ms period; 0 means unlimited.
	// It must lie in [0.01, number of CPUs].
	CPUs float64
	// CPUShares is --cpu-shares; 0 means the default (1024). On v2 it is converted
	// to cpu.weight as runc does (1024 -> 100). Clamped to [2, 262144] as Docker.
	CPUShares int64
	// PidsLimit is --pids-limit; 0 or negative means unlimited.
	PidsLimit int64
}

// Stats is what `docker stats` needs from the cgroup.
type Stats struct {
	Memory MemoryStats
	CPU    CPUStats
	Pids   PidsStats
}

// MemoryStats are in bytes.
type MemoryStats struct {
	Usage    uint64 // v1 memory.usage_in_bytes, v2 memory.current
	MaxUsage uint64 // peak: v1 memory.max_usage_in_bytes, v2 memory.peak (kernel >= 5.19, else 0)
	// Limit is the memory limit; when there is none, or it exceeds the machine's
	// memory, the machine's memory (what dockerd reports).
	Limit     uint64
	Unlimited bool              // no memory limit is set
	Failcnt   uint64            // v1 only: times the limit was hit
	Stat      map[string]uint64 // memory.stat as is (v1: cache, rss, total_inactive_file...; v2: anon, file, inactive_file...)
}

// CPUStats are in nanoseconds.
type CPUStats struct {
	TotalNs, UserNs, SystemNs uint64
	PerCPUNs                  []uint64 // v1 only (cpuacct.usage_percpu)
	Periods                   uint64   // CFS periods elapsed with a quota
	ThrottledPeriods          uint64
	ThrottledNs               uint64
}

// PidsStats counts tasks (processes and threads); Limit 0 means unlimited.
type PidsStats struct {
	Current, Limit uint64
}

// Option configures New, Open and Reclaim.
type Option func(*config)

// WithRoot sets where the cgroup filesystems are mounted (default /sys/fs/cgroup).
func WithRoot(dir string) Option { return func(c *config) { c.root = dir } }

// WithParent sets the parent cgroup's name (default "flick"). Tests use their own.
func WithParent(name string) Option { return func(c *config) { c.parent = name } }

// WithMode forces the layout ("v1", "v2" or "hybrid") instead of detecting it at
// the root; for fake cgroupfs trees in tests.
func WithMode(mode string) Option { return func(c *config) { c.mode = mode } }

// WithCPUCount sets the CPU count that bounds Resources.CPUs (default: the CPUs this
// process may run on, as Docker).
func WithCPUCount(n int) Option { return func(c *config) { c.numCPU = n } }

type config struct {
	root, parent, mode string
	numCPU             int
}

// nameRE is a cgroup name's characters; validName adds its length (a
// bounded repetition would compile to a program 128 times as large).
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`) })

func validName(s string) bool { return len(s) <= 128 && nameRE().MatchString(s) }

func newConfig(opts []Option) (*config, error) {
	c := &config{root: DefaultRoot, parent: DefaultParent}
	for _, o := range opts {
		o(c)
	}
	if c.numCPU <= 0 {
		c.numCPU = runtime.NumCPU()
	}
	if !validName(c.parent) {
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid cgroup parent name %q", c.parent))
	}
	if c.mode == "" {
		c.mode = modeAt(c.root)
	}
	switch c.mode {
	case "v1", "v2", "hybrid":
	case "none":
		return nil, errdefs.NewFailedPrecondition(fmt.Errorf("no cgroup filesystem is mounted at %s: mount cgroup2 there (or the v1 controllers under it)", c.root))
	default:
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("unknown cgroup mode %q (want v1, v2 or hybrid)", c.mode))
	}
	return c, nil
}

// Cgroup is one container's cgroup.
type Cgroup struct {
	id  string
	cfg *config
	b   backend

	mu       sync.Mutex // serialises changes (Update, Freeze, Thaw, KillAll, Destroy)
	warnings []string
	// applied is what the last apply wrote (nil: unknown, as for a cgroup
	// Open found): an Update to the same limits writes nothing. A start
	// from a warm cgroup, made with the defaults, then costs no writes
	// unless the container has limits (twenty-odd files on cgroup v1).
	applied *limits
}

// limits are the fields of the library's resources that resolve sets.
type limits struct {
	memory, swap, quota    int64
	period, shares, weight uint64
	pidsLimited            bool
	pids                   int64
}

func limitsOf(r *cgroups.Resources) limits {
	l := limits{memory: r.Memory, swap: r.MemorySwap, quota: r.CpuQuota, period: r.CpuPeriod, shares: r.CpuShares, weight: r.CpuWeight}
	if r.PidsLimit != nil {
		l.pidsLimited, l.pids = true, *r.PidsLimit
	}
	return l
}

// backend is what differs between v1 and v2.
type backend interface {
	create() error
	exists() bool
	// have reports whether a controller can be used, and if not, why.
	have(controller string) (bool, string)
	swapAccounting() bool
	set(r *cgroups.Resources) error
	add(pid int) error
	stats() (*cgroups.Stats, error)
	oomKills() (uint64, error)
	pids() ([]int, error)
	canFreeze() bool
	freeze(state cgroups.FreezerState) error
	// killFile writes cgroup.kill where the kernel has it (v2, >= 5.14) and reports
	// whether it did.
	killFile() (bool, error)
	destroy() error
	path(controller string) string
	dirs() []string
}

func newBackend(cfg *config, id string) (backend, error) {
	if cfg.mode == "v2" {
		return newV2(cfg, id), nil
	}
	return newV1(cfg, id)
}

func checkID(id string) error {
	if !validName(id) {
		return errdefs.NewInvalidArgument(fmt.Errorf("invalid container id %q for a cgroup name", id))
	}
	return nil
}

// New creates the cgroup for a container (or re-opens it if it exists, for
// re-adoption after a daemon restart) and applies r. A cgroup New created is removed
// again if applying r fails.
func New(id string, r Resources, opts ...Option) (*Cgroup, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if err := validate(r, cfg.numCPU); err != nil {
		return nil, err
	}
	b, err := newBackend(cfg, id)
	if err != nil {
		return nil, err
	}
	c := &Cgroup{id: id, cfg: cfg, b: b}
	existed := b.exists()
	if err := b.create(); err != nil {
		if !existed {
			_ = b.destroy()
		}
		return nil, fmt.Errorf("create cgroup for %s: %w", id, err)
	}
	if err := c.apply(r); err != nil {
		if !existed {
			_ = b.destroy()
		}
		return nil, err
	}
	return c, nil
}

// Open returns the existing cgroup of a container; a NotFound error if there is none.
func Open(id string, opts ...Option) (*Cgroup, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return open(cfg, id)
}

func open(cfg *config, id string) (*Cgroup, error) {
	b, err := newBackend(cfg, id)
	if err != nil {
		return nil, err
	}
	if !b.exists() {
		return nil, errdefs.NewNotFound(fmt.Errorf("no cgroup for container %s under %s (%s)", id, cfg.root, cfg.mode))
	}
	return &Cgroup{id: id, cfg: cfg, b: b}, nil
}

// ID is the container id the cgroup is named after.
func (c *Cgroup) ID() string { return c.id }

// Mode is the layout the cgroup lives in: "v1", "v2" or "hybrid".
func (c *Cgroup) Mode() string { return c.cfg.mode }

// Warnings are the adjustments the last New or Update made to the resources, as
// Docker reports them (swap limit ignored without swap accounting, shares clamped).
func (c *Cgroup) Warnings() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.warnings)
}

// Add moves a process (all its threads) into the cgroup.
func (c *Cgroup) Add(pid int) error {
	if pid <= 0 {
		return errdefs.NewInvalidArgument(fmt.Errorf("invalid pid %d", pid))
	}
	if err := c.b.add(pid); err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, c.id, err)
	}
	return nil
}

// Update makes the cgroup's limits r: the whole desired state (a zero field means
// unlimited or default), as the caller has merged `docker update` into the
// container's configuration.
func (c *Cgroup) Update(r Resources) error {
	if err := validate(r, c.cfg.numCPU); err != nil {
		return err
	}
	return c.apply(r)
}

func (c *Cgroup) apply(r Resources) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	res, warnings, err := resolve(r, c.b, c.cfg.mode == "v2")
	if err != nil {
		return err
	}
	l := limitsOf(res)
	if c.applied != nil && *c.applied == l {
		c.warnings = warnings
		return nil
	}
	c.applied = nil // unknown if set fails half-way
	if err := c.b.set(res); err != nil {
		return fmt.Errorf("set resources of cgroup %s: %w", c.id, err)
	}
	c.applied, c.warnings = &l, warnings
	return nil
}

// Stats reads memory, CPU and pids figures.
func (c *Cgroup) Stats() (Stats, error) {
	if !c.b.exists() {
		return Stats{}, errdefs.NewNotFound(fmt.Errorf("stats of cgroup %s: it no longer exists", c.id))
	}
	st, err := c.b.stats()
	if err != nil {
		return Stats{}, fmt.Errorf("stats of cgroup %s: %w", c.id, err)
	}
	var s Stats
	m := st.MemoryStats
	s.Memory = MemoryStats{
		Usage: m.Usage.Usage, MaxUsage: m.Usage.MaxUsage, Limit: m.Usage.Limit,
		Failcnt: m.Usage.Failcnt, Stat: maps.Clone(m.Stats),
	}
	if ok, _ := c.b.have("memory"); !ok || m.Usage.Limit == 0 || m.Usage.Limit >= unlimitedFloor {
		s.Memory.Unlimited = true
	}
	if machine := machineMemory(); machine > 0 && (s.Memory.Unlimited || s.Memory.Limit > machine) {
		s.Memory.Limit = machine
	}
	u := st.CpuStats.CpuUsage
	s.CPU = CPUStats{
		TotalNs: u.TotalUsage, UserNs: u.UsageInUsermode, SystemNs: u.UsageInKernelmode,
		PerCPUNs:         slices.Clone(u.PercpuUsage),
		Periods:          st.CpuStats.ThrottlingData.Periods,
		ThrottledPeriods: st.CpuStats.ThrottlingData.ThrottledPeriods,
		ThrottledNs:      st.CpuStats.ThrottlingData.ThrottledTime,
	}
	s.Pids = PidsStats{Current: st.PidsStats.Current, Limit: st.PidsStats.Limit}
	return s, nil
}

// OOMKills is how many processes the kernel OOM-killed in the cgroup (v1:
// memory.oom_control oom_kill, kernel >= 4.13; v2: memory.events oom_kill).
func (c *Cgroup) OOMKills() (uint64, error) {
	if ok, why := c.b.have("memory"); !ok {
		return 0, notAvailable("memory", why)
	}
	n, err := c.b.oomKills()
	if err != nil {
		return 0, fmt.Errorf("oom kill count of cgroup %s: %w", c.id, err)
	}
	return n, nil
}

// Pids lists every process in the cgroup and its descendants.
func (c *Cgroup) Pids() ([]int, error) {
	pids, err := c.b.pids()
	if err != nil {
		return nil, fmt.Errorf("processes of cgroup %s: %w", c.id, err)
	}
	sort.Ints(pids)
	return pids, nil
}

// Freeze stops every process in the cgroup (docker pause).
func (c *Cgroup) Freeze() error { return c.setFrozen(cgroups.Frozen) }

// Thaw resumes them (docker unpause).
func (c *Cgroup) Thaw() error { return c.setFrozen(cgroups.Thawed) }

func (c *Cgroup) setFrozen(state cgroups.FreezerState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.b.canFreeze() {
		_, why := c.b.have("freezer")
		return notAvailable("freezer", why)
	}
	if err := c.b.freeze(state); err != nil {
		return fmt.Errorf("set cgroup %s %s: %w", c.id, strings.ToLower(string(state)), err)
	}
	return nil
}

// KillAll sends SIGKILL to every process in the cgroup and waits (up to 10 s) until
// it is empty. v2 writes cgroup.kill where the kernel has it; otherwise the cgroup
// is frozen, every process killed and the cgroup thawed, in rounds, so that nothing
// forks away meanwhile.
func (c *Cgroup) KillAll() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.b.exists() {
		return nil
	}
	deadline := time.Now().Add(killTimeout)
	pids, err := c.b.pids()
	if err != nil {
		return fmt.Errorf("kill cgroup %s: %w", c.id, err)
	}
	if slices.Contains(pids, os.Getpid()) {
		return fmt.Errorf("kill cgroup %s: refusing, this process (%d) is in it", c.id, os.Getpid())
	}
	if len(pids) == 0 {
		return nil
	}
	used, err := c.b.killFile()
	if err != nil {
		return fmt.Errorf("kill cgroup %s: %w", c.id, err)
	}
	if used {
		return c.waitEmpty(deadline, true)
	}
	for {
		frozen := c.b.canFreeze() && c.b.freeze(cgroups.Frozen) == nil
		pids, err := c.b.pids()
		if err == nil {
			for _, pid := range pids {
				if pid == os.Getpid() {
					continue
				}
				if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
					err = fmt.Errorf("kill pid %d of cgroup %s: %w", pid, c.id, err)
					if frozen {
						_ = c.b.freeze(cgroups.Thawed)
					}
					return err
				}
			}
		}
		if frozen {
			if err := c.b.freeze(cgroups.Thawed); err != nil {
				return fmt.Errorf("kill cgroup %s: thaw: %w", c.id, err)
			}
		}
		if err := c.waitEmpty(time.Now().Add(100*time.Millisecond), false); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return c.waitEmpty(deadline, true)
		}
	}
}

// waitEmpty polls until the cgroup has no process or the deadline passes; report
// says whether to return an error then.
func (c *Cgroup) waitEmpty(deadline time.Time, report bool) error {
	for {
		pids, err := c.b.pids()
		if errors.Is(err, os.ErrNotExist) || (err == nil && len(pids) == 0) {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("kill cgroup %s: %w", c.id, err)
			}
			if report {
				return fmt.Errorf("kill cgroup %s: processes %v survive SIGKILL (stuck in uninterruptible sleep?)", c.id, pids)
			}
			return errors.New("not empty")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Destroy removes the cgroup, which must have no processes (KillAll first). It is
// idempotent.
func (c *Cgroup) Destroy() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.b.exists() {
		return nil
	}
	if pids, err := c.b.pids(); err == nil && len(pids) > 0 {
		return errdefs.NewFailedPrecondition(fmt.Errorf("remove cgroup %s: it still has %d processes %v: kill them first", c.id, len(pids), pids))
	}
	if err := c.b.destroy(); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", c.id, err)
	}
	return nil
}

// Dirs are the cgroup's directories, one per hierarchy (v2: one): what a
// container's monitor joins its init to and removes at the end
// (internal/cgroupdir).
func (c *Cgroup) Dirs() []string { return c.b.dirs() }

// Teardown kills every process in the cgroup (KillAll) and removes it
// (Destroy).
func (c *Cgroup) Teardown() error {
	if err := c.KillAll(); err != nil {
		return err
	}
	return c.Destroy()
}

// Path is the cgroup's directory for a v1 controller ("memory", "cpu", "cpuacct",
// "pids", "freezer", "devices"); "" if that controller is not mounted. On v2 every
// controller shares one directory.
func (c *Cgroup) Path(controller string) string { return c.b.path(controller) }

// Reclaim removes the cgroups of these ids, where they exist, killing their
// processes first: a daemon's own containers whose monitors died with it.
// Every other cgroup under the parent is left alone, so two daemons (two
// data roots) on one host never kill each other's containers. It returns the
// ids it removed; errors for the others are joined.
func Reclaim(ids []string, opts ...Option) ([]string, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return removeAll(cfg, ids)
}

func removeAll(cfg *config, ids []string) ([]string, error) {
	var removed []string
	var errs []error
	for _, id := range ids {
		c, err := open(cfg, id)
		if errdefs.Is(err, errdefs.NotFound) {
			continue
		}
		if err == nil {
			err = c.Teardown()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep cgroup %s: %w", id, err))
			continue
		}
		removed = append(removed, id)
	}
	return removed, errors.Join(errs...)
}

// listIDs is the sorted union of the directory names under the parent.
func listIDs(cfg *config) ([]string, error) {
	var dirs []string
	if cfg.mode == "v2" {
		dirs = []string{filepath.Join(cfg.root, cfg.parent)}
	} else {
		for _, ctrl := range v1Controllers {
			dirs = append(dirs, filepath.Join(cfg.root, ctrl, cfg.parent))
		}
	}
	set := map[string]bool{}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list cgroups: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() && validName(e.Name()) {
				set[e.Name()] = true
			}
		}
	}
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

func notAvailable(controller, why string) error {
	return errdefs.NewFailedPrecondition(fmt.Errorf("cgroup %s controller not available: %s", controller, why))
}

// validate refuses what Docker refuses, before anything is created.
// Validate checks r as New will, with Docker's messages: a container's
// limits are refused when it is created, not when it first starts.
func Validate(r Resources) error { return validate(r, runtime.NumCPU()) }

func validate(r Resources, numCPU int) error {
	bad := func(format string, a ...any) error {
		return errdefs.NewInvalidArgument(fmt.Errorf(format, a...))
	}
	switch {
	case r.MemoryBytes < -1:
		return bad("invalid memory limit %d", r.MemoryBytes)
	case r.MemoryBytes > 0 && r.MemoryBytes < minMemory:
		return bad("minimum memory limit allowed is 6MB (asked for %d bytes)", r.MemoryBytes)
	case r.MemorySwapBytes < -1:
		return bad("invalid memory-swap limit %d", r.MemorySwapBytes)
	case r.MemorySwapBytes > 0 && r.MemoryBytes <= 0:
		return bad("you should always set the memory limit when using a memory-swap limit")
	case r.MemorySwapBytes > 0 && r.MemorySwapBytes < r.MemoryBytes:
		return bad("minimum memory-swap limit should be larger than memory limit (memory %d, memory-swap %d)", r.MemoryBytes, r.MemorySwapBytes)
	case math.IsNaN(r.CPUs) || math.IsInf(r.CPUs, 0) || r.CPUs < 0:
		return bad("invalid CPUs %v", r.CPUs)
	case r.CPUShares < 0:
		return bad("invalid cpu-shares %d", r.CPUShares)
	}
	if r.CPUs > 0 {
		nano := int64(math.Round(r.CPUs * 1e9))
		if nano < 1e7 || nano > int64(numCPU)*1e9 {
			return bad("range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", numCPU, numCPU)
		}
	}
	return nil
}

// cpuQuota is the CFS quota in µs per 100 ms period for --cpus.
func cpuQuota(cpus float64) int64 {
	nano := int64(math.Round(cpus * 1e9))
	return nano * cfsPeriod / 1e9
}

// resolve turns r into the library's resources for the controllers the cgroup has:
// every field is set (unlimited or default when r leaves it zero), so that Update
// also lifts limits.
func resolve(r Resources, b backend, v2 bool) (*cgroups.Resources, []string, error) {
	res := &cgroups.Resources{}
	var warnings []string

	if ok, why := b.have("memory"); ok {
		res.Memory = -1
		if r.MemoryBytes > 0 {
			res.Memory = r.MemoryBytes
		}
		swapAcct := b.swapAccounting()
		switch {
		case !swapAcct:
			if r.MemorySwapBytes > 0 {
				warnings = append(warnings, "your kernel does not support swap limit capabilities or the cgroup is not mounted; memory limited without swap")
			}
		case res.Memory == -1, r.MemorySwapBytes == -1:
			res.MemorySwap = -1
		case r.MemorySwapBytes > 0:
			res.MemorySwap = r.MemorySwapBytes
		case r.MemoryBytes > math.MaxInt64/2:
			res.MemorySwap = -1
		default:
			res.MemorySwap = 2 * r.MemoryBytes
		}
	} else if r.MemoryBytes > 0 || r.MemorySwapBytes > 0 {
		return nil, nil, notAvailable("memory", why)
	}

	if ok, why := b.have("cpu"); ok {
		res.CpuPeriod = cfsPeriod
		res.CpuQuota = -1
		if r.CPUs > 0 {
			res.CpuQuota = cpuQuota(r.CPUs)
		}
		shares := r.CPUShares
		switch {
		case shares == 0:
			shares = defaultShares
		case shares < minCPUShares:
			warnings = append(warnings, fmt.Sprintf("cpu-shares %d raised to the minimum %d", shares, minCPUShares))
			shares = minCPUShares
		case shares > maxCPUShares:
			warnings = append(warnings, fmt.Sprintf("cpu-shares %d lowered to the maximum %d", shares, maxCPUShares))
			shares = maxCPUShares
		}
		if v2 {
			res.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(uint64(shares))
		} else {
			res.CpuShares = uint64(shares)
		}
	} else if r.CPUs > 0 || r.CPUShares > 0 {
		return nil, nil, notAvailable("cpu", why)
	}

	if ok, why := b.have("pids"); ok {
		limit := int64(-1)
		if r.PidsLimit > 0 {
			limit = r.PidsLimit
		}
		res.PidsLimit = &limit
	} else if r.PidsLimit > 0 {
		return nil, nil, notAvailable("pids", why)
	}
	return res, warnings, nil
}

var (
	machineMemOnce sync.Once
	machineMem     uint64
)

// machineMemory is MemTotal, what dockerd reports as the limit of an unlimited
// container.
func machineMemory() uint64 {
	machineMemOnce.Do(func() {
		var info unix.Sysinfo_t
		if unix.Sysinfo(&info) == nil {
			machineMem = uint64(info.Totalram) * uint64(info.Unit)
		}
	})
	return machineMem
}
