package container

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/cgroup"
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

// hangingMonitor reads its Launch, then starts nothing until the file go
// appears in the bundle: a monitor slower than the start's patience. Then
// it runs its "app" (a sleep), records it as a monitor does and reports.
const hangingMonitor = `#!/bin/sh
read -r line <&3
b=$(printf '%s' "$line" | sed 's/.*"bundle":"\([^"]*\)".*/\1/')
while [ ! -e "$b/go" ]; do sleep 0.02; done
sleep 3109 &
app=$!
printf '{"status":"running","shimPid":%d,"pid":%d}' $$ $app > "$b/state.tmp"
mv "$b/state.tmp" "$b/state.json"
echo started >&3
wait $app
printf '{"status":"exited","shimPid":%d,"exitCode":143}' $$ > "$b/state.tmp"
mv "$b/state.tmp" "$b/state.json"
echo exited >&3
`

// TestStopAfterAStartGaveUp: a start whose monitor does not report within
// its time gives up, and the monitor goes on. A second start must not
// launch another monitor beside it, and a stop must stop the app once it
// runs (it used to mark the container stopped and return, and the app then
// ran on).
func TestStopAfterAStartGaveUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: starts make cgroups")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "monitor")
	if err := os.WriteFile(bin, []byte(hangingMonitor), 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Root: filepath.Join(dir, "containers"), Volumes: filepath.Join(dir, "volumes"),
		MonitorBinary: bin, InitBinary: "/bin/true", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.startTimeout = 300 * time.Millisecond
	id := strings.Repeat("9a", 32)
	b := fakeBundle(t, m, id, bundle.State{})
	if err := bundle.WriteSpec(b, bundle.Spec{ID: id, Network: "none"}, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("pkill", "-f", "sleep 3109").Run()
		if cg, err := cgroup.Open(id); err == nil {
			cg.KillAll()
			cg.Destroy()
		}
	})
	ctx := context.Background()
	if err := m.Start(ctx, id); !errdefs.Is(err, errdefs.Unavailable) {
		t.Fatalf("start with a monitor that does not report: %v; want unavailable", err)
	}
	mo := m.mons.of(id)
	if mo == nil {
		t.Fatal("no monitor tracked after the start gave up")
	}
	if err := m.Start(ctx, id); !errdefs.Is(err, errdefs.Conflict) {
		t.Fatalf("second start while the first monitor launches: %v; want a conflict", err)
	}
	if m.mons.of(id) != mo {
		t.Fatal("the second start launched a second monitor")
	}

	stopped := make(chan error, 1)
	go func() { stopped <- m.Stop(ctx, id, 10*time.Second) }()
	select {
	case err := <-stopped:
		t.Fatalf("stop returned (%v) while the monitor could still start the app", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := os.WriteFile(filepath.Join(b, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("stop did not return")
	}
	c, err := m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Running() || c.State.ExitCode != 143 {
		t.Fatalf("after the stop: %s, exit code %d; want exited by SIGTERM (143)", c.Status(), c.State.ExitCode)
	}
}
