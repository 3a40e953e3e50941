package runtime

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/sandbox"
	"golang.org/x/sys/unix"
)

// A warm init stages, while it waits for its container, the special file
// systems every container root gets that depend on nothing of the
// container: /proc of its own pid namespace, /dev, and /sys of its own
// network namespace, with Docker's masked and read-only paths applied. It
// mounts them under a tmpfs in its own mount namespace, clones each tree
// into a detached one (open_tree, Linux 5.2) and unmounts the originals.
// At the go-ahead init takes a fresh copy of the host's mount namespace,
// mounts the overlay root and moves the trees onto it (move_mount): three
// calls on the start's path instead of some forty mounts. What the staging
// does not fit is mounted as before: all of it for a privileged container
// (no masks, /dev without nodev), /sys for one that joins another network
// namespace (bridge, host), everything on a kernel without open_tree.

// staged holds the detached trees; -1: not staged.
type staged struct{ proc, dev, sys int }

// stageDir is where the trees are made: in the warm init's own mount
// namespace, made private first, so the host sees none of it.
const stageDir = "/tmp"

// errGoAhead: the go-ahead came while the trees were being made.
var errGoAhead = errors.New("the go-ahead came first")

// stage makes the trees; nil if it could not, or if the go-ahead (readable
// on sync) came first: a start that took this init before it was done
// waits at most for the step in progress.
func stage(sync int) *staged {
	st := &staged{-1, -1, -1}
	if err := st.make(sync); err != nil {
		st.close()
		return nil
	}
	return st
}

func (st *staged) make(sync int) error {
	// A kernel without open_tree (before 5.2) could not clone the trees:
	// nothing is made for nothing.
	probe, err := unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return err
	}
	unix.Close(probe)
	// Slave, not private: the staging tmpfs must not reach the host, but
	// the host's unmounts must reach this copy of its mounts, which this
	// init (and its monitor) hold while it waits; a USB stick unmounted
	// meanwhile would otherwise stay alive in it.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", stageDir, "tmpfs", nse, "mode=755"); err != nil {
		return err
	}
	spec := bundle.Spec{Network: "none"}
	for _, step := range []func() error{
		func() error { return mountProc(stageDir) },
		func() error { return mountDev(stageDir, spec) },
		func() error { return mountSys(stageDir, spec) },
		func() error {
			return sandbox.ProtectPathsAt(stageDir, sandbox.MaskedPaths(), sandbox.ReadonlyPaths())
		},
	} {
		if readable(sync) {
			// Left mounted: the namespace goes with the monitor's
			// hold on it, after the start.
			return errGoAhead
		}
		if err := step(); err != nil {
			return err
		}
	}
	defer unix.Unmount(stageDir, unix.MNT_DETACH)
	// The clones must be private, as a cold init's mounts are: binds of
	// the host's nodes made in a slave namespace are slaves too.
	if err := unix.Mount("", stageDir, "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	for _, t := range []struct {
		fd *int
		p  string
	}{{&st.proc, "/proc"}, {&st.dev, "/dev"}, {&st.sys, "/sys"}} {
		fd, err := unix.OpenTree(unix.AT_FDCWD, stageDir+t.p, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return fmt.Errorf("clone the staged %s: %w", t.p, err)
		}
		*t.fd = fd
	}
	return nil
}

// moveInto moves onto root the trees that fit spec and says which it
// moved. keepsNetNS: init stays in the network namespace it was born in,
// the one the staged /sys shows. A tree that does not fit, or cannot be
// moved, is left to mountSpecial; all are closed.
func (st *staged) moveInto(root string, spec bundle.Spec, keepsNetNS bool) specialDone {
	var done specialDone
	if st == nil {
		return done
	}
	// A tree that was not moved is unmounted as its descriptor closes (an
	// RCU grace period included): on another thread, beside the rest of
	// the start. Moved ones close at no cost.
	defer func() { go st.close() }()
	if spec.Privileged {
		return done
	}
	move := func(fd *int, p string) bool {
		t, err := target(root, p, true)
		if err != nil || unix.MoveMount(*fd, "", unix.AT_FDCWD, t, unix.MOVE_MOUNT_F_EMPTY_PATH) != nil {
			return false
		}
		return true
	}
	// A volume at or under /proc or /sys gets the masks and read-only
	// paths on top of it, as Docker applies them after the mounts: that
	// tree is mounted the usual way.
	if !volumeUnder(spec, "/proc") {
		done.proc = move(&st.proc, "/proc")
	}
	done.dev = move(&st.dev, "/dev")
	if keepsNetNS && spec.Network != "host" && !volumeUnder(spec, "/sys") {
		done.sys = move(&st.sys, "/sys")
	}
	return done
}

// volumeUnder says whether spec mounts a volume at dir or below it.
func volumeUnder(spec bundle.Spec, dir string) bool {
	for _, m := range spec.Mounts {
		t := filepath.Clean("/" + m.Target)
		if t == dir || strings.HasPrefix(t, dir+"/") {
			return true
		}
	}
	return false
}

// readable says whether fd has something to read now.
func readable(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(p, 0)
	return err == nil && n > 0
}

func (st *staged) close() {
	for _, fd := range []*int{&st.proc, &st.dev, &st.sys} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// unprotected drops from paths those under a tree that came staged, whose
// masks and read-only mounts came with it.
func unprotected(paths []string, done specialDone) []string {
	var out []string
	for _, p := range paths {
		switch {
		case done.proc && strings.HasPrefix(p, "/proc/"), done.sys && strings.HasPrefix(p, "/sys/"):
		default:
			out = append(out, p)
		}
	}
	return out
}
