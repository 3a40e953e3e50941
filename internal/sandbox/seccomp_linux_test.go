package sandbox

import (
	"github.com/flick-edge/flick/internal/capability"

	"encoding/binary"
	"fmt"
	"testing"
	"unsafe"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// filterVM runs a seccomp program on synthetic seccomp_data with x/net/bpf's
// interpreter, so every architecture's section can be checked on this host.
type filterVM struct {
	t  *testing.T
	vm *bpf.VM
}

func newFilterVM(t *testing.T, prog []bpf.Instruction) filterVM {
	t.Helper()
	var one uint16 = 1
	if *(*byte)(unsafe.Pointer(&one)) != 1 {
		t.Skip("the filter's argument offsets are laid out for a little-endian host")
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	return filterVM{t, vm}
}

// run evaluates the filter for syscall nr of ABI a. The interpreter loads
// words big-endian (packet order), the kernel in host order; so each 32-bit
// word is stored big-endian at the place a little-endian kernel keeps it.
func (f filterVM) run(id arch.AuditArch, nr uint32, args ...uint64) uint32 {
	f.t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], nr)
	binary.BigEndian.PutUint32(data[4:], uint32(id))
	for i, a := range args {
		binary.BigEndian.PutUint32(data[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[16+8*i+4:], uint32(a>>32))
	}
	r, err := f.vm.Run(data)
	if err != nil {
		f.t.Fatal(err)
	}
	return uint32(r)
}

func retName(r uint32) string {
	switch r {
	case retAllow:
		return "ALLOW"
	case retEPERM:
		return "EPERM"
	case retENOSYS:
		return "ENOSYS"
	}
	return fmt.Sprintf("%#x", r)
}

type call struct {
	name string
	args []uint64
	want uint32
}

func (f filterVM) check(a *arch.Info, calls []call) {
	f.t.Helper()
	for _, c := range calls {
		nr, ok := a.SyscallNames[c.name]
		if !ok {
			continue
		}
		if got := f.run(a.ID, uint32(nr|a.SeccompMask), c.args...); got != c.want {
			f.t.Errorf("%s: %s%v = %s, want %s", a.Name, c.name, c.args, retName(got), retName(c.want))
		}
	}
}

func mustCaps(t *testing.T, names ...string) capability.Set {
	t.Helper()
	m, err := capability.Parse(names)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// applySyscalls are what Apply and the Go runtime still call after the
// filter is in, and what any program needs: none may be denied.
var applySyscalls = []string{
	"prctl", "setgroups", "setgroups32", "setresgid", "setresgid32", "setresuid", "setresuid32",
	"capset", "capget", "execve", "exit_group", "exit", "futex", "mmap", "mmap2", "munmap", "read",
	"write", "openat", "close", "rt_sigprocmask", "rt_sigaction", "sigaltstack", "tgkill", "gettid",
	"sched_yield", "nanosleep", "clock_gettime", "madvise", "fcntl", "wait4", "waitid", "fork", "vfork",
	"seccomp", "name_to_handle_at", "clock_adjtime", "io_uring_setup", "socketpair", "uretprobe",
}

func TestFilterDefault(t *testing.T) {
	for _, goarch := range []string{"amd64", "arm64", "arm", "386"} {
		abis, err := arches(goarch)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := newPolicy(mustCaps(t, capability.Default()...), true).assemble(abis)
		if err != nil {
			t.Fatal(goarch, err)
		}
		t.Logf("%s: %d instructions", goarch, len(prog))
		f := newFilterVM(t, prog)
		for _, a := range abis {
			var calls []call
			for _, n := range applySyscalls {
				calls = append(calls, call{n, nil, retAllow})
			}
			for _, n := range []string{"mount", "umount", "umount2", "unshare", "setns", "keyctl", "add_key",
				"request_key", "reboot", "kexec_load", "init_module", "finit_module", "delete_module", "bpf",
				"perf_event_open", "pivot_root", "kcmp", "pidfd_getfd", "sethostname", "setdomainname",
				"open_by_handle_at", "acct", "iopl", "ioperm", "settimeofday", "stime", "clock_settime",
				"clock_settime64", "swapon", "userfaultfd", "move_pages", "mbind", "get_mempolicy",
				"set_mempolicy", "fsopen", "fsmount", "move_mount", "open_tree", "syslog", "vhangup",
				"quotactl", "lookup_dcookie", "vm86", "uselib", "_sysctl", "ustat", "sysfs"} {
				calls = append(calls, call{n, nil, retEPERM})
			}
			const sigchld = 17
			calls = append(calls,
				call{"ptrace", nil, retAllow}, // kernel >= 4.8, as Docker
				call{"process_vm_readv", nil, retAllow},
				call{"chroot", nil, retAllow}, // CAP_SYS_CHROOT is a default
				call{"clone", []uint64{sigchld}, retAllow},
				call{"clone", []uint64{unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD | unix.CLONE_SYSVSEM}, retAllow},
				call{"clone", []uint64{unix.CLONE_NEWUSER | sigchld}, retEPERM},
				call{"clone", []uint64{unix.CLONE_NEWNS}, retEPERM},
				call{"clone", []uint64{unix.CLONE_NEWNET | 1<<40}, retEPERM},
				call{"clone", []uint64{unix.CLONE_NEWCGROUP}, retEPERM},
				call{"clone3", nil, retENOSYS},
				call{"socket", []uint64{unix.AF_INET, unix.SOCK_STREAM}, retAllow},
				call{"socket", []uint64{unix.AF_UNIX}, retAllow},
				call{"socket", []uint64{afVsock}, retEPERM},
				call{"socket", []uint64{1<<32 | afVsock}, retEPERM}, // high bits the kernel drops
				call{"personality", []uint64{0}, retAllow},
				call{"personality", []uint64{0xffffffff}, retAllow},
				call{"personality", []uint64{0x20008}, retAllow},
				call{"personality", []uint64{0x0040000 /* ADDR_NO_RANDOMIZE */}, retEPERM},
				call{"personality", []uint64{0x0400000 /* READ_IMPLIES_EXEC */}, retEPERM},
			)
			f.check(a, calls)
		}
		// An ABI not in the filter gets nothing.
		if got := f.run(0x40000008 /* AUDIT_ARCH_MIPSEL */, 4000); got != retENOSYS {
			t.Errorf("%s: foreign ABI = %s", goarch, retName(got))
		}
	}
}

func TestFilterABIs(t *testing.T) {
	abis, _ := arches("amd64")
	prog, err := newPolicy(mustCaps(t, capability.Default()...), true).assemble(abis)
	if err != nil {
		t.Fatal(err)
	}
	f := newFilterVM(t, prog)
	// int 0x80 mount(2) from a 64-bit process: the i386 section catches it.
	if got := f.run(arch.I386.ID, 21); got != retEPERM {
		t.Errorf("i386 mount = %s", retName(got))
	}
	// 21 is access(2) on x86_64.
	if got := f.run(arch.X86_64.ID, 21); got != retAllow {
		t.Errorf("x86_64 access = %s", retName(got))
	}
	// x32: even an allowed syscall is refused.
	if got := f.run(arch.X86_64.ID, x32Bit /* x32 read */); got != retENOSYS {
		t.Errorf("x32 read = %s", retName(got))
	}
	if _, err := arches("riscv64"); err == nil {
		t.Error("riscv64 has no table but was accepted")
	}
}

func TestFilterCapabilitiesLift(t *testing.T) {
	for _, tc := range []struct {
		cap   string
		calls []call
	}{
		{"SYS_ADMIN", []call{
			{"mount", nil, retAllow}, {"umount2", nil, retAllow}, {"unshare", nil, retAllow}, {"setns", nil, retAllow},
			{"sethostname", nil, retAllow}, {"bpf", nil, retAllow}, {"perf_event_open", nil, retAllow},
			{"fsopen", nil, retAllow}, {"syslog", nil, retAllow},
			{"clone", []uint64{unix.CLONE_NEWUSER | unix.CLONE_NEWNS}, retAllow}, {"clone3", nil, retAllow},
			// Docker lifts none of these for SYS_ADMIN.
			{"pivot_root", nil, retEPERM}, {"keyctl", nil, retEPERM}, {"reboot", nil, retEPERM},
			{"kcmp", nil, retEPERM}, {"socket", []uint64{afVsock}, retEPERM},
		}},
		{"SYS_PTRACE", []call{{"kcmp", nil, retAllow}, {"pidfd_getfd", nil, retAllow}, {"process_madvise", nil, retAllow}, {"mount", nil, retEPERM}}},
		{"SYS_TIME", []call{{"settimeofday", nil, retAllow}, {"clock_settime", nil, retAllow}, {"stime", nil, retAllow}, {"clock_settime64", nil, retAllow}}},
		{"SYS_MODULE", []call{{"init_module", nil, retAllow}, {"finit_module", nil, retAllow}, {"delete_module", nil, retAllow}, {"kexec_load", nil, retEPERM}}},
		{"SYS_BOOT", []call{{"reboot", nil, retAllow}, {"kexec_file_load", nil, retEPERM}}},
		{"SYS_PACCT", []call{{"acct", nil, retAllow}}},
		{"SYS_RAWIO", []call{{"iopl", nil, retAllow}, {"ioperm", nil, retAllow}}},
		{"SYS_NICE", []call{{"mbind", nil, retAllow}, {"get_mempolicy", nil, retAllow}, {"set_mempolicy", nil, retAllow}, {"move_pages", nil, retEPERM}}},
		{"SYS_TTY_CONFIG", []call{{"vhangup", nil, retAllow}}},
		{"SYSLOG", []call{{"syslog", nil, retAllow}, {"mount", nil, retEPERM}}},
		{"BPF", []call{{"bpf", nil, retAllow}, {"mount", nil, retEPERM}}},
		{"PERFMON", []call{{"perf_event_open", nil, retAllow}}},
		{"DAC_READ_SEARCH", []call{{"open_by_handle_at", nil, retAllow}}},
	} {
		caps, err := capability.Resolve([]string{tc.cap}, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, goarch := range []string{"amd64", "arm64", "arm"} {
			abis, _ := arches(goarch)
			prog, err := newPolicy(mustCaps(t, caps...), true).assemble(abis)
			if err != nil {
				t.Fatal(err)
			}
			f := newFilterVM(t, prog)
			for _, a := range abis {
				f.check(a, tc.calls)
			}
		}
	}
	// Dropping SYS_CHROOT brings Docker's chroot block back.
	caps, _ := capability.Resolve(nil, []string{"SYS_CHROOT"}, false)
	abis, _ := arches("amd64")
	prog, _ := newPolicy(mustCaps(t, caps...), true).assemble(abis)
	newFilterVM(t, prog).check(arch.X86_64, []call{{"chroot", nil, retEPERM}})
}

func TestFilterOldKernelPtrace(t *testing.T) {
	abis, _ := arches("amd64")
	prog, err := newPolicy(mustCaps(t, capability.Default()...), false).assemble(abis)
	if err != nil {
		t.Fatal(err)
	}
	newFilterVM(t, prog).check(arch.X86_64, []call{{"ptrace", nil, retEPERM}, {"process_vm_writev", nil, retEPERM}})
	prog, _ = newPolicy(mustCaps(t, append(capability.Default(), "SYS_PTRACE")...), false).assemble(abis)
	newFilterVM(t, prog).check(arch.X86_64, []call{{"ptrace", nil, retAllow}})
}

// Every name in the rules must be a real syscall somewhere: a typo would
// silently allow the syscall it meant.
func TestFilterNamesExist(t *testing.T) {
	tables := []*arch.Info{arch.X86_64, arch.I386, arch.AARCH64, arch.ARM}
	for _, r := range append(denyRules, ptraceRule) {
		for _, n := range r.names {
			found := false
			for _, a := range tables {
				_, ok := a.SyscallNames[n]
				found = found || ok
			}
			if !found {
				t.Errorf("%q is in no syscall table", n)
			}
		}
	}
	// And the 64-bit ABIs know the main ones directly.
	for _, n := range []string{"mount", "umount2", "unshare", "setns", "keyctl", "bpf", "clone", "clone3", "socket", "personality"} {
		for _, a := range []*arch.Info{arch.X86_64, arch.AARCH64, arch.ARM, arch.I386} {
			if _, ok := a.SyscallNames[n]; !ok {
				t.Errorf("%s has no %s", a.Name, n)
			}
		}
	}
}

func TestReleaseAtLeast(t *testing.T) {
	for _, tc := range []struct {
		rel  string
		want bool
	}{
		{"6.18.44-fc-v445", true}, {"4.8.0", true}, {"4.7.10", false}, {"3.19.0-generic", false},
		{"4.10.1", true}, {"5.0", true}, {"6.8-rc1", true}, {"garbage", true}, {"4.x", true},
	} {
		if got := releaseAtLeast(tc.rel, 4, 8); got != tc.want {
			t.Errorf("releaseAtLeast(%q) = %v", tc.rel, got)
		}
	}
}
