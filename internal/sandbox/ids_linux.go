package sandbox

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Per-thread credential changes. The syscall package's Setgroups,
// Setresgid and Setresuid apply to every thread of the process
// (AllThreadsSyscall: a signal to each thread, then waiting for all of
// them), which cost an init about a millisecond of its start on two busy
// CPUs. Apply's thread is locked and is the one that execs, and execve
// makes it the whole process, so its own credentials are the ones that
// count; runc changes only the calling thread's for the same reason.

func setgroupsThread(gids []uint32) error {
	var p unsafe.Pointer
	if len(gids) > 0 {
		p = unsafe.Pointer(&gids[0])
	}
	if _, _, errno := unix.RawSyscall(sysSetgroups, uintptr(len(gids)), uintptr(p), 0); errno != 0 {
		return errno
	}
	return nil
}

func setresgidThread(gid uint32) error {
	if _, _, errno := unix.RawSyscall(sysSetresgid, uintptr(gid), uintptr(gid), uintptr(gid)); errno != 0 {
		return errno
	}
	return nil
}

func setresuidThread(uid uint32) error {
	if _, _, errno := unix.RawSyscall(sysSetresuid, uintptr(uid), uintptr(uid), uintptr(uid)); errno != 0 {
		return errno
	}
	return nil
}
