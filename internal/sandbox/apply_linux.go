package sandbox

import (
	"github.com/flick-edge/flick/internal/capability"

	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Options are the security options of a container.
type Options struct {
	// Privileged: no seccomp filter, and the caller passes every capability.
	Privileged bool
	// NoNewPrivileges sets no_new_privs (--security-opt no-new-privileges).
	// Docker leaves it unset by default, so setuid binaries keep working.
	NoNewPrivileges bool
	// Seccomp is "" for Docker's default profile or "unconfined" for none.
	Seccomp string
}

// Apply is the last step before exec. In order, it:
//
//  1. locks the calling goroutine to its OS thread, for good: capabilities
//     and the bounding set are per thread, so the exec must come from this
//     goroutine (execve then makes this thread the whole process);
//  2. sets no_new_privs if asked;
//  3. loads the seccomp filter for caps on every thread (unless privileged
//     or "unconfined"). It goes in while the process is still full root,
//     because without no_new_privs the kernel accepts a filter only from a
//     holder of CAP_SYS_ADMIN; the filter denies none of the syscalls the
//     later steps make (prctl, setgroups, setresgid, setresuid, capset);
//  4. reduces the bounding set to caps and clears the ambient set;
//  5. sets the supplementary groups, then the gid, then the uid (real,
//     effective and saved). Leaving uid 0 makes the kernel clear the
//     permitted and effective sets (keepcaps is off), as execve would;
//  6. sets the capability sets: for uid 0 effective = permitted = caps, for
//     any other uid all empty (as Docker does: only the bounding set is
//     given). Inheritable is empty in both cases, as in Docker since
//     20.10.14 (CVE-2022-24769).
//
// Capability names unknown to the running kernel are ignored. With
// Privileged, caps the runtime itself lacks are left out; otherwise asking
// for one is an error. After an error the process is partly confined and
// must exit.
func Apply(id Identity, caps []string, opts Options) error {
	runtime.LockOSThread() // never unlocked: this thread is the sandboxed one

	want, err := capability.Parse(caps)
	if err != nil {
		return err
	}
	if id.UID > maxID || id.GID > maxID {
		return ErrRange
	}
	groups := make([]uint32, len(id.AdditionalGIDs))
	for i, g := range id.AdditionalGIDs {
		if g > maxID {
			return ErrRange
		}
		groups[i] = uint32(g)
	}
	last := lastCapCached()
	want &= capability.Set(1)<<uint(last+1) - 1
	held, err := capGet()
	if err != nil {
		return err
	}
	if missing := want &^ held.permitted; id.UID == 0 && missing != 0 {
		if !opts.Privileged {
			return fmt.Errorf("the runtime itself lacks %s", strings.Join(missing.Names(), ", "))
		}
		want &^= missing
	}

	var filter []unix.SockFilter
	switch opts.Seccomp {
	case "", "unconfined":
	default:
		return fmt.Errorf("seccomp profile %q: only Docker's default and \"unconfined\" are supported", opts.Seccomp)
	}
	if !opts.Privileged && opts.Seccomp == "" {
		if filter, err = defaultFilterFor(want); err != nil {
			return err
		}
	}

	if opts.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	if filter != nil {
		if err := loadFilter(filter); err != nil {
			return err
		}
	}

	for c := 0; c <= last; c++ {
		if !want.Has(c) {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				return fmt.Errorf("drop %s from the bounding set: %w", capName(c), err)
			}
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}

	// This thread's credentials only (ids_linux.go): it is the one that
	// execs.
	if err := setgroupsThread(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := setresgidThread(uint32(id.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", id.GID, err)
	}
	if err := setresuidThread(uint32(id.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", id.UID, err)
	}

	var set capState
	if id.UID == 0 {
		set.effective, set.permitted = want, want
	}
	if err := capSetThread(set); err != nil {
		return err
	}
	return nil
}

func capName(c int) string {
	if c < capability.Known() {
		return capability.Name(c)
	}
	return fmt.Sprintf("capability %d", c)
}

// prepared is what Prepare computed ahead of Apply.
var prepared struct {
	last   int // lastCap(); 0: not computed
	caps   capability.Set
	filter []unix.SockFilter // Docker's default filter for caps
}

// Prepare computes ahead what Apply will need for a container with caps
// (Docker's default seccomp filter for them, the kernel's last capability),
// so that a warm init does that work before its container comes. Apply
// uses it if its capabilities turn out to be these; it is not safe to call
// concurrently with Apply.
func Prepare(caps []string) error {
	want, err := capability.Parse(caps)
	if err != nil {
		return err
	}
	prepared.last = lastCap()
	want &= capability.Set(1)<<uint(prepared.last+1) - 1
	f, err := defaultFilterFor(want)
	if err != nil {
		return err
	}
	prepared.caps, prepared.filter = want, f
	return nil
}

func lastCapCached() int {
	if prepared.last > 0 {
		return prepared.last
	}
	return lastCap()
}

// defaultFilterFor is Docker's default filter for caps, assembled.
func defaultFilterFor(caps capability.Set) ([]unix.SockFilter, error) {
	if prepared.filter != nil && prepared.caps == caps {
		return prepared.filter, nil
	}
	f, err := defaultFilter(caps)
	if err != nil {
		return nil, err
	}
	return assemble(f)
}

func assemble(prog []bpf.Instruction) ([]unix.SockFilter, error) {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return filter, nil
}

// lastCap is the highest capability the running kernel knows.
func lastCap() int {
	last := 0
	for c := 0; c < 64; c++ {
		if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err != nil {
			break
		}
		last = c
	}
	return last
}

type capState struct{ effective, permitted, inheritable capability.Set }

func capGet() (capState, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var d [2]unix.CapUserData
	if err := unix.Capget(&hdr, &d[0]); err != nil {
		return capState{}, fmt.Errorf("capget: %w", err)
	}
	join := func(lo, hi uint32) capability.Set { return capability.Set(hi)<<32 | capability.Set(lo) }
	return capState{
		effective:   join(d[0].Effective, d[1].Effective),
		permitted:   join(d[0].Permitted, d[1].Permitted),
		inheritable: join(d[0].Inheritable, d[1].Inheritable),
	}, nil
}

// capSetThread sets the calling thread's effective, permitted and
// inheritable sets.
func capSetThread(s capState) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	d := [2]unix.CapUserData{
		{Effective: uint32(s.effective), Permitted: uint32(s.permitted), Inheritable: uint32(s.inheritable)},
		{Effective: uint32(s.effective >> 32), Permitted: uint32(s.permitted >> 32), Inheritable: uint32(s.inheritable >> 32)},
	}
	if err := unix.Capset(&hdr, &d[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}
