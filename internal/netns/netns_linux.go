// Package netns runs code inside a network namespace. It is its own
// package, apart from internal/network, so that the container helper (monitor
// and init) can join a namespace without linking netlink and nftables.
package netns

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Enter runs fn on a locked OS thread switched into the network namespace
// at nsPath, so that sockets fn creates and processes fn starts
// (exec.Cmd.Start called from fn itself, not from a goroutine fn starts)
// belong to that namespace. Afterwards the thread is switched back and
// unlocked; if that fails, or fn panics, it stays locked and the Go runtime
// discards it when fn's goroutine ends. A panic in fn is re-raised in the
// caller's goroutine.
//
// fn runs on a goroutine of its own. It must change nothing else about its
// thread (other namespaces, credentials); if it must, it calls
// runtime.LockOSThread once more without unlocking, and the thread is
// discarded.
//
// Why a child started from fn is born in the namespace (checked in Go 1.26's
// syscall/exec_linux.go, and by TestEnterStartsChildInNamespace):
// exec.Cmd.Start -> os.StartProcess -> syscall.forkExec -> forkAndExecInChild1
// runs in the calling goroutine, and the child is made by a raw clone(2)
// (CLONE_VFORK|CLONE_VM, or clone3) on the calling thread, the locked one; a
// new task takes its namespaces from the task that clones it.
func Enter(nsPath string, fn func() error) error {
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer unix.Close(target)
	type result struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan result, 1)
	go func() {
		// From here on the thread stays locked unless it is back in its own
		// namespace: a goroutine that ends locked takes its thread with it.
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("open this thread's network namespace: %w", err)}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("enter network namespace %s: %w", nsPath, err)}
			return
		}
		var r result
		func() {
			defer func() {
				if p := recover(); p != nil {
					r = result{panicked: true, panicVal: p}
				}
			}()
			r.err = fn()
		}()
		if !r.panicked && unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	if r.panicked {
		panic(r.panicVal)
	}
	return r.err
}
