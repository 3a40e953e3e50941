package runtime

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelSigaction is the kernel's struct sigaction for rt_sigaction on the
// architectures Flick builds for (amd64, arm64, arm: handler, flags,
// restorer, then a 64-bit mask).
type kernelSigaction struct {
	handler  uintptr
	flags    uintptr
	restorer uintptr
	mask     uint64
}

const sigIgn = 1 // SIG_IGN

// defaultIgnoredSignals gives the app every signal an ancestor left
// ignored with its default action. An ignored signal survives execve (a
// caught one is reset): the monitor ignores terminal signals, and Go keeps
// an inherited ignore for SIGHUP and SIGINT and for the real-time signals
// it does not use, so every app got Ctrl-C, `kill -INT` and `--stop-signal
// SIGINT` ignored (a shell script's trap never ran, Python installed no
// KeyboardInterrupt). Docker's apps start with nothing ignored. Called just
// before the exec, on init's thread: signals Go handles are left to
// execve, so the runtime is not disturbed meanwhile.
func defaultIgnoredSignals() {
	for sig := 1; sig <= 64; sig++ {
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) {
			continue
		}
		var old kernelSigaction
		if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
			continue // not a signal on this kernel
		}
		if old.handler != sigIgn {
			continue
		}
		dfl := kernelSigaction{}
		unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0)
	}
}
