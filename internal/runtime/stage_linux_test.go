package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/sandbox"
	"golang.org/x/sys/unix"
)

// The test binary doubles as a warm init: with stageHelperEnv set, TestMain
// runs stageHelper (in the namespaces a warm init has) instead of the tests.
const stageHelperEnv = "FLICK_STAGE_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(stageHelperEnv) != "" {
		if err := stageHelper(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type stageReport struct {
	Mounted, Staged []string // normalised mountinfo lines under each root
	Done            specialDone
	AbortedNil      bool // stage returned nil when the go-ahead was there first
}

func (d specialDone) MarshalJSON() ([]byte, error) {
	return json.Marshal([]bool{d.proc, d.dev, d.sys})
}

// stageHelper makes a container's special file systems twice, on two
// roots: mounted as a cold init does, and staged then moved as a warm init
// does; then it stages with the go-ahead already readable.
func stageHelper() error {
	goruntime.LockOSThread()
	// As on a systemd host: shared mounts, of which the warm init's
	// namespace is a copy (its mounts peers of the host's).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SHARED, ""); err != nil {
		return err
	}
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return err
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return err
	}
	spec := bundle.Spec{Network: "none"}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	st := stage(int(r.Fd()))
	if st == nil {
		return fmt.Errorf("stage failed")
	}
	newRoot := func() (string, error) {
		d, err := os.MkdirTemp("", "root")
		if err != nil {
			return "", err
		}
		return d, unix.Mount("tmpfs", d, "tmpfs", 0, "mode=755")
	}
	// The roots stand for the container's fresh mount namespace, which
	// init makes private before it mounts anything.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	staged, err := newRoot()
	if err != nil {
		return err
	}
	done := st.moveInto(staged, spec, true)
	if err := mountSpecial(staged, spec, done); err != nil {
		return err
	}
	if err := sandbox.ProtectPathsAt(staged, unprotected(sandbox.MaskedPaths(), done), unprotected(sandbox.ReadonlyPaths(), done)); err != nil {
		return err
	}
	mounted, err := newRoot()
	if err != nil {
		return err
	}
	if err := mountSpecial(mounted, spec, specialDone{}); err != nil {
		return err
	}
	if err := sandbox.ProtectPathsAt(mounted, sandbox.MaskedPaths(), sandbox.ReadonlyPaths()); err != nil {
		return err
	}
	rep := stageReport{Done: done, Mounted: mountsUnder(mounted), Staged: mountsUnder(staged)}
	w.Write([]byte{0})
	rep.AbortedNil = stage(int(r.Fd())) == nil
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// mountsUnder lists the mounts below root as "path fstype root options
// propagation super-options", sorted: what a container would see, without
// ids.
func mountsUnder(root string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 10 {
			continue
		}
		rel, ok := strings.CutPrefix(f[4], root+"/")
		if !ok {
			continue
		}
		sep := slices.Index(f, "-")
		out = append(out, strings.Join([]string{"/" + rel, f[sep+1], f[3], f[5], propagation(f[6:sep]), f[sep+3]}, " "))
	}
	slices.Sort(out)
	return out
}

// propagation is mountinfo's optional fields without their group ids
// ("shared", "master"; "private" if none).
func propagation(fields []string) string {
	var out []string
	for _, f := range fields {
		k, _, _ := strings.Cut(f, ":")
		out = append(out, k)
	}
	if len(out) == 0 {
		return "private"
	}
	return strings.Join(out, ",")
}

// TestStagedSpecialMatchesMounted: what a warm init stages and moves onto
// the root is what a cold init mounts there, masks and read-only paths
// included; a go-ahead that comes first stops the staging.
func TestStagedSpecialMatchesMounted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts in new namespaces)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), stageHelperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS}
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("helper: %v\n%s", err, stderr)
	}
	var rep struct {
		Mounted, Staged []string
		Done            []bool
		AbortedNil      bool
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !slices.Equal(rep.Done, []bool{true, true, true}) {
		t.Fatalf("moved (proc, dev, sys) = %v, want all", rep.Done)
	}
	if len(rep.Mounted) < 20 {
		t.Fatalf("only %d mounts made the usual way:\n%s", len(rep.Mounted), strings.Join(rep.Mounted, "\n"))
	}
	if !slices.Equal(rep.Mounted, rep.Staged) {
		t.Fatalf("staged differs from mounted:\nmounted:\n%s\nstaged:\n%s", strings.Join(rep.Mounted, "\n"), strings.Join(rep.Staged, "\n"))
	}
	if !rep.AbortedNil {
		t.Fatal("stage went on with the go-ahead waiting")
	}
}
