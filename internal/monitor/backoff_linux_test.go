package monitor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/bundle"
)

// TestSleepUnlessStopped: a restart's back-off ends early, with false, when
// a stop marks the container, and otherwise sleeps its time out without
// looking for the mark over and over (it waits on inotify; it used to look
// every 50 ms for up to a minute).
func TestSleepUnlessStopped(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, bundle.StopFile)

	before := stopLooks.Load()
	if !sleepUnlessStopped(dir, 600*time.Millisecond) {
		t.Fatal("no mark, yet the back-off said stopped")
	}
	if n := stopLooks.Load() - before; n > 3 {
		t.Fatalf("looked for the stop mark %d times in a 600 ms back-off; want a wait, not a poll", n)
	}

	done := make(chan bool, 1)
	go func() { done <- sleepUnlessStopped(dir, time.Minute) }()
	time.Sleep(50 * time.Millisecond)
	if err := os.WriteFile(mark, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case again := <-done:
		if again {
			t.Fatal("marked stopped, yet the back-off said run again")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the back-off did not see the stop mark")
	}

	// Marked before: no sleep at all.
	if sleepUnlessStopped(dir, time.Minute) {
		t.Fatal("marked stopped before the back-off, yet it said run again")
	}
}
