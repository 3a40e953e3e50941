package container

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mcontainer "github.com/moby/moby/api/types/container"
	mevents "github.com/moby/moby/api/types/events"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/logfile"
)

// fakeBundle puts a container record in m's store as Create does (built
// under a hidden name, renamed in), with state st if st.Status is set.
func fakeBundle(t *testing.T, m *Manager, id string, st bundle.State) string {
	t.Helper()
	stage := filepath.Join(m.cfg.Root, stagePrefix+id)
	if err := os.Mkdir(stage, 0o711); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(Record{ID: id, Name: "c-" + id[:6], Created: time.Now(), Config: &mcontainer.Config{}, HostConfig: &mcontainer.HostConfig{}})
	if err := os.WriteFile(filepath.Join(stage, "container.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if st.Status != "" {
		if err := bundle.WriteState(stage, st, false); err != nil {
			t.Fatal(err)
		}
	}
	b := filepath.Join(m.cfg.Root, id)
	if err := os.Rename(stage, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestManager(t *testing.T) *Manager {
	t.Helper()
	dir := t.TempDir()
	m, err := New(Config{Root: filepath.Join(dir, "containers"), Volumes: filepath.Join(dir, "volumes")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if !m.notify.ok() {
		t.Skip("no inotify here")
	}
	return m
}

func fired(ch <-chan struct{}, within time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(within):
		return false
	}
}

func TestNotifierWakes(t *testing.T) {
	m := newTestManager(t)
	id := strings.Repeat("ab", 32)
	b := fakeBundle(t, m, id, bundle.State{})

	// A monitor's state write (a rename into the bundle) wakes a waiter.
	ch := m.notify.changed(id)
	if ch == nil {
		t.Fatal("changed: nil with inotify")
	}
	if err := bundle.WriteState(b, bundle.State{Status: "running"}, true); err != nil {
		t.Fatal(err)
	}
	if !fired(ch, 10*time.Second) {
		t.Fatal("a new state.json did not wake the waiter")
	}

	// Log writes do not wake anybody while nobody follows the log...
	changed, written := m.notify.changed(id), m.notify.written(id)
	w, err := logfile.Open(filepath.Join(b, bundle.LogFile), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append("stdout", []byte("unfollowed\n")); err != nil {
		t.Fatal(err)
	}
	if fired(changed, 200*time.Millisecond) || fired(written, 0) {
		t.Fatal("a write to a log nobody follows woke a waiter")
	}
	// ... and wake its followers, not the state's waiters, while somebody does.
	release := m.Follow(id)
	written = m.notify.written(id)
	if err := w.Append("stdout", []byte("followed\n")); err != nil {
		t.Fatal(err)
	}
	if !fired(written, 10*time.Second) {
		t.Fatal("a write to a followed log did not wake its follower")
	}
	if fired(changed, 0) {
		t.Fatal("a log write woke a waiter on the state")
	}
	release()
	w.Close() // an open descriptor under the bundle would delay its IN_DELETE_SELF

	// Watch hears of the changes too.
	ids, _ := m.notify.takeDirty()
	if len(ids) != 1 || ids[0] != id {
		t.Fatalf("changed containers: %v, want [%s]", ids, id)
	}

	// The bundle's removal (a rename to trash, as durable.RemoveAll does,
	// then the delete) wakes a waiter, and its watch goes.
	changed = m.notify.changed(id)
	if err := os.Rename(b, filepath.Join(m.cfg.Root, ".trash-"+id)); err != nil {
		t.Fatal(err)
	}
	if !fired(changed, 10*time.Second) {
		t.Fatal("the bundle's removal did not wake the waiter")
	}
	os.RemoveAll(filepath.Join(m.cfg.Root, ".trash-"+id))
	eventually(t, 10*time.Second, "the watches of a removed bundle go", func() bool {
		m.notify.mu.Lock()
		defer m.notify.mu.Unlock()
		return len(m.notify.wds)+len(m.notify.ids) == 0
	})

	// A bundle renamed in (a create) is watched without being asked.
	id2 := strings.Repeat("cd", 32)
	fakeBundle(t, m, id2, bundle.State{})
	eventually(t, 10*time.Second, "a created bundle is watched", func() bool {
		m.notify.mu.Lock()
		defer m.notify.mu.Unlock()
		_, ok := m.notify.wds[id2]
		return ok
	})
}

// eventually fails the test unless cond holds within d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
	}
}

// TestWaitDoesNotPoll: a client waiting on a running container (docker
// wait, an attached docker run) costs the daemon nothing until the
// container changes; it used to read its state every 5 ms. Its end is
// seen at once: the state's change, then its monitor's exit (a pidfd; a
// container adopted from an earlier daemon has no exit report).
func TestWaitDoesNotPoll(t *testing.T) {
	m := newTestManager(t)
	// A stand-in for the container's monitor: shimAlive knows a monitor by
	// its command line.
	shim := exec.Command("/bin/sh", "-c", "read x", "__shim")
	stdin, err := shim.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := shim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { shim.Process.Kill(); shim.Wait() }()
	id := strings.Repeat("ef", 32)
	b := fakeBundle(t, m, id, bundle.State{Status: "running", ShimPid: shim.Process.Pid, StartedAt: time.Now()})

	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		code, err := m.Wait(ctx, id, "not-running")
		res <- result{code, err}
	}()
	time.Sleep(100 * time.Millisecond) // let it settle into its wait
	before := m.looks.Load()
	time.Sleep(500 * time.Millisecond)
	if n := m.looks.Load() - before; n > 5 {
		t.Fatalf("Wait read the container %d times in 0.5 s while nothing changed: it polls", n)
	}

	// The monitor records the exit, then ends.
	if err := bundle.WriteState(b, bundle.State{Status: "exited", ShimPid: shim.Process.Pid, ExitCode: 3, FinishedAt: time.Now()}, false); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		t.Fatalf("Wait returned %v while the monitor still ran", r)
	case <-time.After(200 * time.Millisecond):
	}
	stdin.Close() // the monitor ends
	select {
	case r := <-res:
		if r.err != nil || r.code != 3 {
			t.Fatalf("Wait: %d, %v; want 3", r.code, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not return after the monitor ended")
	}
}

// TestWaitRemovedDoesNotSpin: waiting for the removal of an exited
// container nobody removes sleeps until it goes (a review found it
// spinning: the monitor's end had already been seen, and each look asked
// for it again).
func TestWaitRemovedDoesNotSpin(t *testing.T) {
	m := newTestManager(t)
	id := strings.Repeat("12", 32)
	b := fakeBundle(t, m, id, bundle.State{Status: "exited", ExitCode: 7, FinishedAt: time.Now()})
	res := make(chan error, 1)
	code := 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		var err error
		code, err = m.Wait(ctx, id, "removed")
		res <- err
	}()
	time.Sleep(100 * time.Millisecond)
	before := m.looks.Load()
	time.Sleep(500 * time.Millisecond)
	if n := m.looks.Load() - before; n > 5 {
		t.Fatalf("Wait read the container %d times in 0.5 s while nothing changed", n)
	}
	// Removed as durable.RemoveAll does: renamed to trash, then deleted.
	trash := filepath.Join(m.cfg.Root, ".trash-"+id)
	if err := os.Rename(b, trash); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(trash)
	select {
	case err := <-res:
		if err != nil || code != 7 {
			t.Fatalf("Wait: %d, %v; want 7", code, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not return after the removal")
	}
}

// TestWatchEvents: a monitor's state writes become start and die events
// when they happen, not at Watch's sweep (every 10 s).
func TestWatchEvents(t *testing.T) {
	m := newTestManager(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs, unsub := m.Subscribe()
	defer unsub()
	go m.Watch(ctx)
	id := strings.Repeat("34", 32)
	b := fakeBundle(t, m, id, bundle.State{})
	// Watch records a container when it first sees it; events are for
	// what changes after.
	eventually(t, 5*time.Second, "Watch sees the new container", func() bool {
		m.events.mu.Lock()
		defer m.events.mu.Unlock()
		_, seen := m.events.seen[id]
		return seen
	})
	expect := func(action mevents.Action, attrs map[string]string) {
		t.Helper()
		select {
		case ev := <-evs:
			if ev.Action != action || ev.Actor.ID != id {
				t.Fatalf("event %s %s, want %s %s", ev.Action, ev.Actor.ID, action, id)
			}
			for k, v := range attrs {
				if ev.Actor.Attributes[k] != v {
					t.Fatalf("%s event: %s=%q, want %q", action, k, ev.Actor.Attributes[k], v)
				}
			}
		case <-time.After(5 * time.Second): // half the sweep's period
			t.Fatalf("no %s event within 5 s", action)
		}
	}
	started := time.Now()
	if err := bundle.WriteState(b, bundle.State{Status: "running", StartedAt: started}, false); err != nil {
		t.Fatal(err)
	}
	expect(mevents.ActionStart, nil)
	if err := bundle.WriteState(b, bundle.State{Status: "exited", StartedAt: started, FinishedAt: time.Now(), ExitCode: 2}, false); err != nil {
		t.Fatal(err)
	}
	expect(mevents.ActionDie, map[string]string{"exitCode": "2"})
}
