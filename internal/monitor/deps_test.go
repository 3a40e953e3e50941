package monitor

import (
	"os/exec"
	"strings"
	"testing"
)

// The monitor runs beside every container for as long as it runs, and a
// process maps all of a small binary it runs: every package linked into
// cmd/flick-monitor is resident memory, once per container. This keeps
// the engine's libraries (cgroup management with its dbus and logrus,
// seccomp, registry, MQTT, Wasm) out of it.
func TestMonitorLinksOnlyWhatItNeeds(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/flick-edge/flick/cmd/flick-monitor").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := []string{
		"github.com/flick-edge/flick/cmd/flick-monitor",
		"github.com/flick-edge/flick/internal/monitor",
		"github.com/flick-edge/flick/internal/bundle",
		"github.com/flick-edge/flick/internal/cgroupdir",
		"github.com/flick-edge/flick/internal/durable",
		"github.com/flick-edge/flick/internal/logfile",
		"github.com/flick-edge/flick/internal/netns",
		"github.com/flick-edge/flick/internal/tty",
		"golang.org/x/sys/unix",
	}
	var extra []string
	for _, p := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(p, "/")
		if !strings.Contains(first, ".") {
			continue // the standard library
		}
		ok := false
		for _, a := range allowed {
			ok = ok || p == a
		}
		if !ok {
			extra = append(extra, p)
		}
	}
	if len(extra) > 0 {
		t.Fatalf("cmd/flick-monitor links %v; each costs resident memory in every container's monitor", extra)
	}
}
