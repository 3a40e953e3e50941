// Package bundle is what the daemon, a container's monitor and its init
// share: the container's bundle directory, with the spec the daemon writes
// (spec.json), the state the monitor reports (state.json), the log, and the
// go-ahead a warm init is given. The daemon talks to a container only
// through its bundle and signals, so it can stop, crash or be replaced while
// containers keep running.
//
// It links nothing but the standard library and internal/durable: the
// monitor (internal/monitor), which lives as long as its container, imports
// it, and every package it pulls in is resident memory in every monitor.
package bundle

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flick-edge/flick/internal/durable"
)

// Mount is a bind mount into the container.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// Tmpfs: a tmpfs (--tmpfs, --mount type=tmpfs) with Options (Docker's:
	// size=, mode=, uid=, gid=, nr_inodes=, exec, suid, dev, ro); no
	// Source.
	Tmpfs   bool     `json:"tmpfs,omitempty"`
	Options []string `json:"options,omitempty"`
	// CopyUp: a volume that gets what the image has at Target while it is
	// empty, as Docker fills a new volume.
	CopyUp bool `json:"copyUp,omitempty"`
}

// Rlimit is a --ulimit: a resource limit set before the app starts.
type Rlimit struct {
	Name string `json:"name"` // Docker's: nofile, nproc, core, ...
	Soft int64  `json:"soft"`
	Hard int64  `json:"hard"`
}

// Device is a host device node exposed in the container (--device).
type Device struct {
	Host      string `json:"host"`
	Container string `json:"container"`
}

// RestartPolicy is Docker's --restart.
type RestartPolicy struct {
	Name string `json:"name"` // "", no, always, unless-stopped, on-failure
	Max  int    `json:"max,omitempty"`
}

// Spec is everything the monitor and init need, written by the daemon into
// the bundle as spec.json.
type Spec struct {
	ID       string   `json:"id"`
	Layers   []string `json:"layers"` // lower directories, top first
	Args     []string `json:"args"`
	Env      []string `json:"env"`
	Cwd      string   `json:"cwd"`
	User     string   `json:"user,omitempty"`
	Hostname string   `json:"hostname"`
	Tty      bool     `json:"tty,omitempty"`
	// ConsoleSize is the terminal's initial rows and columns (-t).
	ConsoleSize [2]uint16 `json:"consoleSize,omitempty"`
	Stdin       bool      `json:"stdin,omitempty"`     // -i: keep stdin open for attach
	StdinOnce   bool      `json:"stdinOnce,omitempty"` // close it when the first attached client leaves

	ReadonlyRootfs bool     `json:"readonlyRootfs,omitempty"`
	Mounts         []Mount  `json:"mounts,omitempty"`
	Devices        []Device `json:"devices,omitempty"`
	Network        string   `json:"network"`         // none | host | bridge
	NetNS          string   `json:"netns,omitempty"` // bridge: the prepared namespace init is started in
	DNS            []string `json:"dns,omitempty"`
	Rlimits        []Rlimit `json:"rlimits,omitempty"`

	Caps       []string `json:"caps"`
	Privileged bool     `json:"privileged,omitempty"`
	Seccomp    string   `json:"seccomp,omitempty"`
	NoNewPrivs bool     `json:"noNewPrivileges,omitempty"` // --security-opt no-new-privileges

	Resources Resources     `json:"resources"`
	Restart   RestartPolicy `json:"restart"`
	LogMax    int64         `json:"logMax"`   // bytes per log file
	LogFiles  int           `json:"logFiles"` // files kept

	// Ephemeral (--rm): nothing of the container need survive a power
	// cut, so its spec and state are written without fsync.
	Ephemeral bool `json:"ephemeral,omitempty"`
}

// Resources are the container's limits, with Docker's meaning; the daemon
// applies them to the container's cgroup (internal/cgroup.Resources has the
// same fields and says what each means).
type Resources struct {
	MemoryBytes     int64   `json:"MemoryBytes,omitempty"`
	MemorySwapBytes int64   `json:"MemorySwapBytes,omitempty"`
	CPUs            float64 `json:"CPUs,omitempty"`
	CPUShares       int64   `json:"CPUShares,omitempty"`
	PidsLimit       int64   `json:"PidsLimit,omitempty"`
}

// WarmArg is the argument a warm monitor and a warm init are started with
// in place of a bundle: they start before their container is known.
const WarmArg = "--warm"

// WarmNice is the nice value a warm monitor (and so its init) waits at:
// warming the next start's monitor never takes the CPU from what runs now.
// The monitor sets it itself, first thing: a daemon that forked it at that
// value would wait, one of its threads and Go's Ps held, until the child
// got the CPU to exec. It returns to the daemon's value when it is given a
// container.
const WarmNice = 19

// WarmStart is a warm init's go-ahead from its monitor: its bundle, and the
// namespaces to take.
type WarmStart struct {
	Bundle string `json:"bundle"`
	MntNS  string `json:"mntns"`           // the monitor's: init takes a fresh copy
	NetNS  string `json:"netns,omitempty"` // "" keeps the fresh one it was born in
	Nice   int    `json:"nice"`            // the daemon's: warm processes wait at a lower priority
}

// NewWarmStart is the go-ahead for a warm init whose monitor is monitorPid:
// init takes a fresh copy of the monitor's mount namespace, joins the
// network namespace spec names (the monitor's for host networking) and
// returns to nice.
func NewWarmStart(bdir string, monitorPid, nice int, spec Spec) WarmStart {
	ws := WarmStart{Bundle: bdir, Nice: nice, MntNS: fmt.Sprintf("/proc/%d/ns/mnt", monitorPid), NetNS: spec.NetNS}
	if spec.Network == "host" {
		ws.NetNS = fmt.Sprintf("/proc/%d/ns/net", monitorPid)
	}
	return ws
}

// Line is ws as init reads it: JSON and a newline.
func (ws WarmStart) Line() ([]byte, error) {
	b, err := json.Marshal(ws)
	return append(b, '\n'), err
}

// ExecSpec is one `docker exec` process, written by the daemon next to the
// bundle.
type ExecSpec struct {
	ContainerID string    `json:"containerID"`
	Pid         int       `json:"pid"` // the container's init, whose namespaces are joined
	Args        []string  `json:"args"`
	Env         []string  `json:"env"`
	Cwd         string    `json:"cwd"`
	User        string    `json:"user"`
	Tty         bool      `json:"tty"`
	ConsoleSize [2]uint16 `json:"consoleSize,omitempty"` // the terminal's initial rows and columns
	Privileged  bool      `json:"privileged"`
}

// State is what the monitor reports, in state.json.
type State struct {
	Status       string    `json:"status"` // running, restarting, exited
	ShimPid      int       `json:"shimPid"`
	Pid          int       `json:"pid"` // the container's init, in the host pid namespace
	ExitCode     int       `json:"exitCode"`
	OOMKilled    bool      `json:"oomKilled,omitempty"`
	Error        string    `json:"error,omitempty"`
	StartedAt    time.Time `json:"startedAt"`
	FinishedAt   time.Time `json:"finishedAt,omitempty"`
	RestartCount int       `json:"restartCount"`
	Stopped      bool      `json:"stopped,omitempty"` // stopped by the user: no restart
}

// Bundle file names.
const (
	SpecFile  = "spec.json"
	StateFile = "state.json"
	LogFile   = "container.log"
	// CopiedUpFile marks a container whose volumes were filled from its
	// image (its first start).
	CopiedUpFile = "copied-up"
	RootDir      = "rootfs"
	UpperDir     = "upper"
	WorkDir      = "work"
	StopFile     = "stopped" // present: the user stopped it; the monitor must not restart
	// ShimLogFile is the monitor's own stderr: why it could not run the
	// container when state.json cannot say.
	ShimLogFile = "shim.log"
)

// VolatileMark is where overlayfs marks, inside the work directory, an
// upper layer mounted with "volatile" (never synced: the Ephemeral
// containers'): a directory, with a file "dirty" in it. It stays after a
// crash, and overlayfs then refuses the layer: its content may be lost.
// The monitor removes it once the container's mounts are gone without a
// crash (ClearVolatile).
var VolatileMark = filepath.Join(WorkDir, "work", "incompat", "volatile")

// HasVolatileMark says whether bundle dir's upper layer carries the mark.
func HasVolatileMark(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, VolatileMark))
	return err == nil
}

// ClearVolatile removes the volatile mark of bundle dir's upper layer: its
// mount is gone (its namespace's last process was reaped and the monitor
// let go of it) and the system did not crash meanwhile, so the page cache
// still has everything written to it.
func ClearVolatile(dir string) error {
	return os.RemoveAll(filepath.Join(dir, VolatileMark)) // the directory, with its "dirty" file
}

// WarmCodecs encodes and decodes a sample of each type a container's start
// reads or writes, and of extra (pointers to values of other such types), so
// that encoding/json has built its codecs for them (the first use of a type
// reflects over all its fields) before a start needs them. A warm monitor
// and a warm init call it while they wait.
func WarmCodecs(extra ...any) {
	for _, v := range append([]any{
		&Spec{Layers: []string{""}, Mounts: []Mount{{}}, Devices: []Device{{}}},
		&State{}, &WarmStart{},
	}, extra...) {
		if b, err := json.Marshal(v); err == nil {
			json.Unmarshal(b, v)
		}
	}
}

// WriteJSON replaces path by rename; with sync it is durable.WriteFile
// (the file, then its directory, fsynced: a power cut leaves the old or the
// new content).
func WriteJSON(path string, v any, sync bool) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if sync {
		return durable.WriteFile(path, b, 0o600)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadJSON decodes the JSON file at path into v; errors name the file.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// WriteSpec stores the spec in a bundle, durably with sync.
func WriteSpec(bundle string, s Spec, sync bool) error {
	return WriteJSON(filepath.Join(bundle, SpecFile), s, sync)
}

// ReadSpec loads a bundle's spec.
func ReadSpec(bundle string) (Spec, error) {
	var s Spec
	return s, ReadJSON(filepath.Join(bundle, SpecFile), &s)
}

// ReadState loads the monitor's last report; a bundle never started has none.
func ReadState(bundle string) (State, error) {
	var s State
	err := ReadJSON(filepath.Join(bundle, StateFile), &s)
	return s, err
}

// WriteState replaces a bundle's state, durably with sync (the monitor
// skips the fsyncs for --rm containers; the daemon writes it only for a
// container whose monitor is gone).
func WriteState(bundle string, s State, sync bool) error {
	return WriteJSON(filepath.Join(bundle, StateFile), s, sync)
}

// MergeEnv joins KEY=VALUE lists as Docker merges an image's environment
// with a container's (and a container's with an exec's): a key given again
// keeps its first place and takes the later value. A key must not appear
// twice, or getenv finds the first value.
func MergeEnv(lists ...[]string) []string {
	var out []string
	at := map[string]int{}
	for _, l := range lists {
		for _, kv := range l {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := at[k]; ok {
				out[i] = kv
				continue
			}
			at[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}
