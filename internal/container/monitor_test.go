package container

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/cgroup"
	"github.com/flick-edge/flick/internal/monitor"
)

// fakeMonitor speaks the monitor's side of the protocol: a warm one reports
// its init (unless NOINIT is set, then it hangs), every one reads its Launch,
// records it and reports started and exited.
const fakeMonitor = `#!/bin/sh
if [ "$4" = "--warm" ]; then
	[ -n "$NOINIT" ] && exec sleep 30
	echo "init 0" >&3
fi
read -r line <&3 || exit 0 # dropped: nothing to record (a late write raced the test's cleanup)
printf '%s\n' "$line" > "$OUT/launch-$$"
echo started >&3
echo exited >&3
`

func testMonitors(t *testing.T) (*monitors, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: launches make cgroups")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "monitor")
	if err := os.WriteFile(bin, []byte(fakeMonitor), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o700)
	t.Setenv("OUT", out)
	ms := newMonitors(1, bin, "/bin/true", slog.New(slog.DiscardHandler))
	ms.warmCgroups = false // the fake reports no init to put in one
	return ms, out
}

func testBundle(t *testing.T, id string) (string, bundle.Spec) {
	t.Helper()
	dir, spec := t.TempDir(), bundle.Spec{ID: id}
	if err := bundle.WriteSpec(dir, spec, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cg, err := cgroup.Open(id); err == nil {
			cg.KillAll()
			cg.Destroy()
		}
	})
	return dir, spec
}

// launched waits for mo's exit report and returns the Launch it was sent.
func launched(t *testing.T, out string, mo *monitorProc) monitor.Launch {
	t.Helper()
	select {
	case <-mo.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("no exit report")
	}
	b, err := os.ReadFile(filepath.Join(out, "launch-"+strconv.Itoa(mo.cmd.Process.Pid)))
	var l monitor.Launch
	if err == nil {
		err = json.Unmarshal(b, &l)
	}
	if err != nil {
		t.Fatalf("launch line: %q, %v", b, err)
	}
	return l
}

func TestLaunchWarmAndCold(t *testing.T) {
	ms, out := testMonitors(t)
	defer ms.close()
	id := "flick-monitor-test-" + strconv.Itoa(os.Getpid())
	dir, spec := testBundle(t, id)

	// Cold: nothing warm yet.
	mo, err := ms.launch(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	l := launched(t, out, mo)
	if l.Bundle != dir || len(l.Cgroup) == 0 || l.Joined {
		t.Fatalf("cold launch %+v", l)
	}
	for _, d := range l.Cgroup {
		if !strings.Contains(d, id) {
			t.Fatalf("cgroup directory %s is not the container's", d)
		}
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("the daemon did not make %s: %v", d, err)
		}
	}
	<-mo.gone

	// Warm: one is pooled and taken.
	ms.refill()
	deadline := time.Now().Add(10 * time.Second)
	for ms.take0() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	mo, err = ms.launch(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(mo.cmd.Args[3:], " "); !strings.Contains(got, bundle.WarmArg) {
		t.Fatalf("launched a cold monitor (%s) with a warm one ready", got)
	}
	l = launched(t, out, mo)
	if l.Bundle != dir || len(l.Cgroup) == 0 {
		t.Fatalf("warm launch %+v", l)
	}
}

// A warm monitor still warming up (it does so at nice 19) does not hold a
// start up: the start gets a cold monitor and the warm one goes back to
// the pool; one that has not warmed up long after its spawn is let go.
func TestLaunchDoesNotWaitForAWarmMonitor(t *testing.T) {
	ms, out := testMonitors(t)
	defer ms.close()
	ms.warmWait = 100 * time.Millisecond
	t.Setenv("NOINIT", "1")
	stuck, err := ms.spawnWarm()
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.cmd.Process.Kill()
	ms.putBack(stuck)
	os.Unsetenv("NOINIT")
	id := "flick-monitor-test-stuck-" + strconv.Itoa(os.Getpid())
	dir, spec := testBundle(t, id)

	mo, err := ms.launch(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	if mo == stuck {
		t.Fatal("the warm monitor that has not warmed up was given the container")
	}
	if l := launched(t, out, mo); l.Bundle != dir {
		t.Fatalf("launch %+v", l)
	}
	<-mo.gone
	if n := ms.take0(); n != 1 {
		t.Fatalf("%d warm monitors in the pool, want the one warming up back", n)
	}

	// Long past its spawn and still not warmed up: let go.
	stuck.spawned = time.Now().Add(-time.Minute)
	mo, err = ms.launch(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	if mo == stuck || ms.take0() != 0 {
		t.Fatal("the stuck warm monitor was kept")
	}
	launched(t, out, mo)
	// Its socket closed, which ends its warm-up (a real monitor then kills
	// its init and exits; this fake just sleeps).
	select {
	case <-stuck.warmed:
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck warm monitor was not let go")
	}
}

// take0 is how many warm monitors are ready.
func (ms *monitors) take0() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.ready)
}

// A start that finds no warm monitor ready (after the first) grows the
// pool by one, up to twice --warm-monitors; once no start has missed for
// shrinkAfter, the pool goes back and the extra monitors are let go.
func TestWarmPoolGrowsInABurst(t *testing.T) {
	ms, out := testMonitors(t)
	defer ms.close()
	ms.shrinkAfter = time.Hour // the burst is ended by hand below: no timing in the test
	id := "flick-monitor-test-burst-" + strconv.Itoa(os.Getpid())
	dir, spec := testBundle(t, id)
	// ready waits until n warm monitors are pooled and warmed up.
	ready := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ms.mu.Lock()
			ok := len(ms.ready) == n
			for _, mo := range ms.ready {
				select {
				case <-mo.warmed:
				default:
					ok = false
				}
			}
			ms.mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d warm monitors ready, want %d warmed up", ms.take0(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	start := func() {
		t.Helper()
		mo, err := ms.launch(dir, spec)
		if err != nil {
			t.Fatal(err)
		}
		launched(t, out, mo)
		<-mo.gone
		ms.refill() // as Start does, a moment later
	}
	takeAll := func() {
		for mo := ms.take(); mo != nil; mo = ms.take() {
			mo.drop()
		}
	}
	start() // the first start: nothing was warm, by design, and that is no burst
	ready(1)
	start() // one was ready
	ready(1)
	takeAll() // taken by other starts
	start()   // found none: a burst
	ready(2)
	takeAll()
	start() // again: twice --warm-monitors at most
	ready(2)
	ms.mu.Lock()
	armed := ms.shrink != nil
	ms.mu.Unlock()
	if !armed {
		t.Fatal("no timer to end the burst")
	}
	ms.settle() // as if the timer fired early: the last miss is recent
	ready(2)
	ms.mu.Lock()
	ms.lastMiss = time.Now().Add(-2 * ms.shrinkAfter)
	ms.mu.Unlock()
	ms.settle() // shrinkAfter without a miss
	ready(1)
	start() // one was ready: the pool stays at --warm-monitors
	time.Sleep(50 * time.Millisecond)
	ready(1)
}
