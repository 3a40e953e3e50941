//go:build linux && (arm || 386)

package sandbox

import "golang.org/x/sys/unix"

// The 32-bit ABIs' plain set*id calls take 16-bit ids.
const (
	sysSetgroups = unix.SYS_SETGROUPS32
	sysSetresgid = unix.SYS_SETRESGID32
	sysSetresuid = unix.SYS_SETRESUID32
)
