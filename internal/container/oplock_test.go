package container

import (
	"context"
	"errors"
	"testing"
	"time"
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
