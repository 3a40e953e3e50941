package sandbox

import (
	"github.com/flick-edge/flick/internal/capability"

	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The seccomp filter reproduces the *effect* of Docker's default profile
// (moby profiles/seccomp/default.json) as a denylist: every syscall is
// allowed except those Docker's allowlist leaves out for a container with
// the given capabilities. Syscalls the kernel gained after the list was
// written are allowed (Docker would refuse them with EPERM). See
// docs/RATIONALE.md, "Why a denylist seccomp filter".

// denyRule blocks names with EPERM unless the container holds one of the
// capabilities in liftedBy (Docker's "includes: caps" sections). Names a given
// architecture does not have are skipped.
type denyRule struct {
	liftedBy []int
	names    []string
}

var denyRules = []denyRule{
	// Not allowed by Docker's profile under any capability.
	{nil, []string{
		"add_key", "keyctl", "request_key", // the keyring is not namespaced
		"kexec_load", "kexec_file_load",
		"pivot_root",
		"swapon", "swapoff",
		"userfaultfd",
		"move_pages", "migrate_pages",
		"create_module", "get_kernel_syms", "query_module", "nfsservctl",
		"uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old",
		"pciconfig_iobase", "pciconfig_read", "pciconfig_write",
	}},
	{[]int{capability.SysAdmin}, []string{
		"mount", "umount", "umount2", "unshare", "setns",
		"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "open_tree_attr", "mount_setattr",
		"fanotify_init", "lookup_dcookie", "quotactl", "quotactl_fd",
		"sethostname", "setdomainname",
	}},
	{[]int{capability.SysAdmin, capability.BPF}, []string{"bpf"}},
	{[]int{capability.SysAdmin, capability.Perfmon}, []string{"perf_event_open"}},
	{[]int{capability.SysAdmin, capability.Syslog}, []string{"syslog"}},
	{[]int{capability.DACReadSearch}, []string{"open_by_handle_at"}},
	{[]int{capability.SysBoot}, []string{"reboot"}},
	{[]int{capability.SysChroot}, []string{"chroot"}},
	{[]int{capability.SysModule}, []string{"init_module", "finit_module", "delete_module"}},
	{[]int{capability.SysPacct}, []string{"acct"}},
	{[]int{capability.SysPtrace}, []string{"kcmp", "pidfd_getfd", "process_madvise"}},
	{[]int{capability.SysRawio}, []string{"iopl", "ioperm"}},
	{[]int{capability.SysTime}, []string{"settimeofday", "stime", "clock_settime", "clock_settime64"}},
	{[]int{capability.SysTTYConfig}, []string{"vhangup"}},
	{[]int{capability.SysNice}, []string{"get_mempolicy", "set_mempolicy", "mbind", "set_mempolicy_home_node"}},
}

// ptraceRule: Docker allows these on kernels from 4.8 on (where seccomp can
// no longer be bypassed with ptrace), and with CAP_SYS_PTRACE on any kernel.
var ptraceRule = denyRule{[]int{capability.SysPtrace}, []string{"ptrace", "process_vm_readv", "process_vm_writev"}}

const (
	// cloneNamespaces are the namespace flags clone(2) may not use without
	// CAP_SYS_ADMIN (Docker's mask 2114060288).
	cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
		unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP
	afVsock = 40
	x32Bit  = 0x40000000
)

// personalities Docker allows: PER_LINUX, PER_LINUX32, UNAME26,
// UNAME26|PER_LINUX32 and the 0xffffffff query.
var personalities = []uint32{0, 8, 0x20000, 0x20008, 0xffffffff}

var (
	retAllow  = uint32(seccomp.ActionAllow)
	retEPERM  = uint32(seccomp.ActionErrno) | uint32(unix.EPERM)
	retENOSYS = uint32(seccomp.ActionErrno) | uint32(unix.ENOSYS)
)

// policy is what the filter does for one capability set.
type policy struct {
	deny         map[string]bool // EPERM
	cloneNS      bool            // EPERM for clone with namespace flags
	clone3ENOSYS bool            // ENOSYS for clone3, whose flags BPF cannot read
}

func newPolicy(caps capability.Set, kernelHasPtraceFix bool) policy {
	p := policy{deny: map[string]bool{}}
	rules := denyRules
	if !kernelHasPtraceFix {
		rules = append(rules[:len(rules):len(rules)], ptraceRule)
	}
	for _, r := range rules {
		lifted := false
		for _, c := range r.liftedBy {
			lifted = lifted || caps.Has(c)
		}
		if !lifted {
			for _, n := range r.names {
				p.deny[n] = true
			}
		}
	}
	p.cloneNS = !caps.Has(capability.SysAdmin)
	p.clone3ENOSYS = !caps.Has(capability.SysAdmin)
	return p
}

// arches is the syscall ABIs a process of this GOARCH can use: the native
// one and the compat one the kernel may also offer (i386 on amd64, arm on
// arm64). x32 on amd64 is refused with ENOSYS in the native section.
func arches(goarch string) ([]*arch.Info, error) {
	switch goarch {
	case "amd64":
		return []*arch.Info{arch.X86_64, arch.I386}, nil
	case "arm64":
		return []*arch.Info{arch.AARCH64, arch.ARM}, nil
	case "arm":
		return []*arch.Info{arch.ARM}, nil
	case "386":
		return []*arch.Info{arch.I386}, nil
	}
	return nil, fmt.Errorf("seccomp: no syscall table for %s; run the container with --security-opt seccomp=unconfined", goarch)
}

// assemble builds the whole filter: one section per ABI, selected by the
// audit arch; an ABI not listed gets ENOSYS for everything.
func (p policy) assemble(abis []*arch.Info) ([]bpf.Instruction, error) {
	prog := []bpf.Instruction{bpf.LoadAbsolute{Off: 4, Size: 4}} // seccomp_data.arch
	for _, a := range abis {
		sec, err := p.section(a)
		if err != nil {
			return nil, err
		}
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(a.ID), SkipTrue: 1},
			bpf.Jump{Skip: uint32(len(sec))})
		prog = append(prog, sec...)
	}
	prog = append(prog, bpf.RetConstant{Val: retENOSYS})
	if len(prog) > 4096 {
		return nil, fmt.Errorf("seccomp filter has %d instructions, more than the kernel's 4096", len(prog))
	}
	return prog, nil
}

// section is the filter for one ABI. It starts by loading the syscall
// number and ends in returns only, so sections can be laid end to end.
//
// It is built with go-seccomp-bpf's assembler (labels, long jumps) rather
// than its Policy type, for two reasons: a Policy only covers the running
// ABI and lets every other one through (default allow would then let a
// 32-bit int 0x80 mount(2) pass on amd64), and its argument checks leave the
// argument, not the syscall number, in the accumulator when they fail, so a
// later comparison could match the wrong syscall. Here each argument check
// is reached only for its own syscall and ends in a return.
func (p policy) section(a *arch.Info) ([]bpf.Instruction, error) {
	nr := func(name string) (uint32, bool) {
		n, ok := a.SyscallNames[name]
		return uint32(n | a.SeccompMask), ok
	}
	var denied []uint32
	for name := range p.deny {
		if n, ok := nr(name); ok {
			denied = append(denied, n)
		}
	}
	sort.Slice(denied, func(i, j int) bool { return denied[i] < denied[j] })

	b := seccomp.NewProgram()
	eperm, enosys := b.NewLabel(), b.NewLabel()
	cloneL, socketL, persL := b.NewLabel(), b.NewLabel(), b.NewLabel()
	for _, n := range denied {
		b.JmpIfTrue(bpf.JumpEqual, n, eperm)
	}
	clone3, hasClone3 := nr("clone3")
	clone, hasClone := nr("clone")
	socket, hasSocket := nr("socket")
	pers, hasPers := nr("personality")
	if p.clone3ENOSYS && hasClone3 {
		b.JmpIfTrue(bpf.JumpEqual, clone3, enosys)
	}
	if p.cloneNS && hasClone {
		b.JmpIfTrue(bpf.JumpEqual, clone, cloneL)
	}
	if hasSocket {
		b.JmpIfTrue(bpf.JumpEqual, socket, socketL)
	}
	if hasPers {
		b.JmpIfTrue(bpf.JumpEqual, pers, persL)
	}
	b.Ret(seccomp.Action(retAllow))

	// The arguments checked are ints or flags the kernel reads from the low
	// 32 bits, so only those are compared: a caller cannot hide AF_VSOCK
	// behind high bits the kernel throws away.
	if p.cloneNS && hasClone {
		b.SetLabel(cloneL) // flags are argument 0 on x86, arm and arm64 (not s390)
		b.LdLo(0)
		b.JmpIfTrue(bpf.JumpBitsSet, cloneNamespaces, eperm)
		b.Ret(seccomp.Action(retAllow))
	}
	if hasSocket {
		b.SetLabel(socketL)
		b.LdLo(0)
		b.JmpIfTrue(bpf.JumpEqual, afVsock, eperm)
		b.Ret(seccomp.Action(retAllow))
	}
	if hasPers {
		ok := b.NewLabel()
		b.SetLabel(persL)
		b.LdLo(0)
		for _, v := range personalities {
			b.JmpIfTrue(bpf.JumpEqual, v, ok)
		}
		b.Ret(seccomp.Action(retEPERM))
		b.SetLabel(ok)
		b.Ret(seccomp.Action(retAllow))
	}
	b.SetLabel(eperm)
	b.Ret(seccomp.Action(retEPERM))
	b.SetLabel(enosys)
	b.Ret(seccomp.Action(retENOSYS))

	body, err := b.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp filter for %s: %w", a.Name, err)
	}
	sec := []bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 4}} // seccomp_data.nr
	if a == arch.X86_64 {
		// x32 syscalls share the x86_64 audit arch; refuse them all.
		sec = append(sec,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32Bit, SkipFalse: 1},
			bpf.RetConstant{Val: retENOSYS})
	}
	return append(sec, body...), nil
}

// defaultFilter is the filter Apply loads for a container with caps.
func defaultFilter(caps capability.Set) ([]bpf.Instruction, error) {
	abis, err := arches(runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	return newPolicy(caps, kernelAtLeast(4, 8)).assemble(abis)
}

// loadFilter installs filter on every thread of the process (TSYNC). The
// caller needs no_new_privs or CAP_SYS_ADMIN.
func loadFilter(filter []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	r1, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return fmt.Errorf("load seccomp filter: %w", errno)
	}
	if r1 != 0 {
		return fmt.Errorf("load seccomp filter: thread %d could not be synchronised", r1)
	}
	return nil
}

// kernelAtLeast reports whether the running kernel is at least major.minor;
// if the release cannot be read it answers true.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return true
	}
	return releaseAtLeast(cString(u.Release[:]), major, minor)
}

// releaseAtLeast compares a kernel release such as "6.8.0-rc1" with
// major.minor; an unparsable release counts as new enough.
func releaseAtLeast(rel string, major, minor int) bool {
	lead := func(s string) (int, bool) {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		n, err := strconv.Atoi(s[:i])
		return n, err == nil
	}
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return true
	}
	ma, ok1 := lead(parts[0])
	mi, ok2 := lead(parts[1])
	if !ok1 || !ok2 {
		return true
	}
	return ma > major || (ma == major && mi >= minor)
}

// cString converts a NUL-terminated Utsname field ([65]int8 or [65]uint8
// depending on the architecture).
func cString[T int8 | uint8](b []T) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}
