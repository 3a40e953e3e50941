package container

import (
	"testing"
	"time"
)

// TestOpLocks: one holder per container at a time, other containers
// unaffected, and nothing kept once released.
func TestOpLocks(t *testing.T) {
	var o opLocks
	unlockA := o.lock("a")
	unlockB := o.lock("b") // another container: not blocked
	got := make(chan struct{})
	go func() {
		defer o.lock("a")()
		close(got)
	}()
	if fired(got, 100*time.Millisecond) {
		t.Fatal("a second holder took a held lock")
	}
	unlockA()
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
