package network

// The tests of netns.Enter live here: they need the network namespaces and
// the serve helper this package's tests make.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/netns"
	"golang.org/x/sys/unix"
)

// threadsOutside lists the process's threads whose network namespace is
// not want, but for the main thread if allowWedged: the Go runtime cannot
// end the main thread, so it parks it for good when a goroutine ends
// locked on it (Enter's panic path).
func threadsOutside(want uint64, allowWedged bool) []string {
	var bad []string
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		if allowWedged && task.Name() == fmt.Sprint(os.Getpid()) {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/proc/self/task", task.Name(), "ns/net"), &st) == nil && st.Ino != want {
			bad = append(bad, task.Name())
		}
	}
	return bad
}

// A process started by exec.Cmd.Start inside Enter is born in the
// namespace (its /proc/<pid>/ns/net is the bind-mounted one), one started
// outside is not, and no thread of this process is left in the namespace.
// Busy goroutines run meanwhile, so Start would show it if the fork could
// happen on another thread than the locked one.
func TestEnterStartsChildInNamespace(t *testing.T) {
	requireRoot(t)
	ns := testNS(t, t.TempDir(), "ns")
	want, orig := nsInode(t, ns), origNetNS
	if want == orig {
		t.Fatal("the new namespace is the current one")
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					runtime.Gosched()
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	start := func(enter bool) uint64 {
		cmd := exec.Command("/proc/self/exe", "-test.run=^$")
		cmd.Env = append(os.Environ(), "FLICK_NETTEST_HELPER=serve", "FLICK_NETTEST_NAME=x", "FLICK_NETTEST_PORT=0")
		var err error
		if enter {
			err = netns.Enter(ns, cmd.Start)
		} else {
			err = cmd.Start()
		}
		if err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		return nsInode(t, fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	}
	for i := range 20 {
		if got := start(true); got != want {
			t.Fatalf("start %d inside Enter: child in netns %d, want %d", i, got, want)
		}
	}
	if got := start(false); got != orig {
		t.Fatalf("start outside Enter: child in netns %d, want %d", got, orig)
	}
	if bad := threadsOutside(orig, false); len(bad) > 0 {
		t.Fatalf("threads %v left outside the original network namespace", bad)
	}
}

func TestEnterErrorsAndPanics(t *testing.T) {
	requireRoot(t)
	ns := testNS(t, t.TempDir(), "ns")
	orig := origNetNS
	if err := netns.Enter(filepath.Join(t.TempDir(), "missing"), func() error { return nil }); err == nil {
		t.Fatal("Enter of a missing namespace succeeded")
	}
	sentinel := errors.New("sentinel")
	if err := netns.Enter(ns, func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("fn's error: %v", err)
	}
	var inside uint64
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want boom", p)
			}
		}()
		netns.Enter(ns, func() error {
			inside = nsInode(t, "/proc/thread-self/ns/net")
			panic("boom")
		})
	}()
	if inside != nsInode(t, ns) {
		t.Fatal("fn did not run in the namespace")
	}
	// The panicking thread was not put back: the runtime discards it.
	deadline := time.Now().Add(5 * time.Second)
	for len(threadsOutside(orig, true)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("threads %v still in the namespace", threadsOutside(orig, true))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewNetNSAndRemove(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	p := testNS(t, dir, "a")
	if !isNetNS(p) {
		t.Fatal("not an nsfs mount")
	}
	if isNetNS(dir) {
		t.Fatal("a directory taken for a namespace")
	}
	if err := removeNetNS(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("still there: %v", err)
	}
	if err := removeNetNS(p); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}
