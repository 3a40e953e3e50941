package container

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestAwaitFollowers(t *testing.T) {
	dir := t.TempDir()
	m, err := New(Config{Root: filepath.Join(dir, "containers"), Volumes: filepath.Join(dir, "volumes")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.awaitFollowers(ctx, "none", time.Hour) // no follower: returns at once

	// Two followers; the wait ends when the second is done, not before.
	r1, r2 := m.Follow("c"), m.Follow("c")
	done := make(chan struct{})
	go func() { m.awaitFollowers(ctx, "c", time.Hour); close(done) }()
	r1()
	r1() // twice is once
	select {
	case <-done:
		t.Fatal("the wait ended with a follower still reading")
	case <-time.After(50 * time.Millisecond):
	}
	r2()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not end when the last follower was done")
	}
	m.followMu.Lock()
	n := len(m.follows)
	m.followMu.Unlock()
	if n != 0 {
		t.Fatalf("left behind: %d containers' followers", n)
	}

	// A follower that never ends: the wait gives up at max.
	defer m.Follow("stuck")()
	m.awaitFollowers(ctx, "stuck", 10*time.Millisecond)
}
