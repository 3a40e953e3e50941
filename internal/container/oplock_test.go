package container

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/errdefs"
)

// TestOpLocks: one holder per container at a time, other containers
// unaffected, a waiter that gives up leaves, and nothing is kept once
// released.
func TestOpLocks(t *testing.T) {
	var o opLocks
	ctx := context.Background()
	unlockA, err := o.lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	unlockB, err := o.lock(ctx, "b") // another container: not blocked
	if err != nil {
		t.Fatal(err)
	}
	// A waiter whose client went away gives up.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := o.lock(short, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock of a held lock with an ended context: %v", err)
	}
	got := make(chan struct{})
	go func() {
		unlock, err := o.lock(ctx, "a")
		if err == nil {
			defer unlock()
		}
		close(got)
	}()
	if fired(got, 100*time.Millisecond) {
		t.Fatal("a second holder took a held lock")
	}
	unlockA()
	unlockA() // twice is once
	if !fired(got, 10*time.Second) {
		t.Fatal("the waiter did not get the lock once it was released")
	}
	unlockB()
	eventually(t, 10*time.Second, "no locks kept", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.by) == 0
	})
}

// TestStartWaitsForARestartingMonitor: a start that finds the container
// exited while its monitor runs on (about to restart it, or to end) does
// not launch a second monitor: it waits for the monitor's next word, and
// finds the container restarting (a no-op, as for a running one) or, if
// nothing comes within 10 s, refuses.
func TestStartWaitsForARestartingMonitor(t *testing.T) {
	m := newTestManager(t)
	shim := exec.Command("/bin/sh", "-c", "read x", "__shim") // shimAlive knows a monitor by its command line
	stdin, err := shim.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := shim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); shim.Wait() }()
	exited := bundle.State{Status: "exited", ShimPid: shim.Process.Pid, ExitCode: 1, FinishedAt: time.Now()}

	// The monitor writes "restarting" a moment later.
	id := strings.Repeat("56", 32)
	b := fakeBundle(t, m, id, exited)
	go func() {
		time.Sleep(100 * time.Millisecond)
		st := exited
		st.Status = "restarting"
		bundle.WriteState(b, st, false)
	}()
	if err := m.Start(context.Background(), id); err != nil {
		t.Fatalf("start of a container its monitor restarts: %v", err)
	}
	if st, _ := bundle.ReadState(b); st.Status != "restarting" {
		t.Fatalf("state after the start: %+v; want the monitor's, untouched", st)
	}

	// Nothing comes: the start refuses rather than launch a second monitor.
	id2 := strings.Repeat("78", 32)
	fakeBundle(t, m, id2, exited)
	if err := m.Start(context.Background(), id2); !errdefs.Is(err, errdefs.Conflict) {
		t.Fatalf("start of a container whose monitor has not settled: %v; want a conflict", err)
	}
}
