package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// memoryCgroup creates a memory cgroup limited to limit bytes, on cgroup v2
// (memory.max) or v1 (memory.limit_in_bytes), and removes it on cleanup.
type memoryCgroup struct {
	dir string
	v2  bool
}

func newMemoryCgroup(t *testing.T, limit int64) *memoryCgroup {
	t.Helper()
	name := fmt.Sprintf("flick-e2e-%d", rand.Int64())
	var st unix.Statfs_t
	cg := &memoryCgroup{}
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		cg.v2, cg.dir = true, filepath.Join("/sys/fs/cgroup", name)
	} else {
		cg.dir = filepath.Join("/sys/fs/cgroup/memory", name)
	}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		t.Skipf("cannot create a memory cgroup: %v", err)
	}
	t.Cleanup(func() { os.Remove(cg.dir) })
	file := "memory.limit_in_bytes"
	if cg.v2 {
		file = "memory.max"
	}
	if err := os.WriteFile(filepath.Join(cg.dir, file), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	if !cg.v2 {
		os.WriteFile(filepath.Join(cg.dir, "memory.swappiness"), []byte("0"), 0o644)
	}
	return cg
}

// wrapper runs a command inside the cgroup.
func (cg *memoryCgroup) wrapper() []string {
	return []string{"sh", "-c", `echo $$ > "` + cg.dir + `/cgroup.procs" && exec "$@"`, "in-cgroup"}
}

func (cg *memoryCgroup) read(file string) string {
	b, _ := os.ReadFile(filepath.Join(cg.dir, file))
	return strings.TrimSpace(string(b))
}

// TestPullLargeImageInSmallMemoryCgroup pulls 512 MiB while the daemon, and the
// page cache it dirties, are held to 128 MiB: extraction must write back early
// and drop what it wrote, or the memory cgroup throttles or kills it.
func TestPullLargeImageInSmallMemoryCgroup(t *testing.T) {
	requireRoot(t)
	cg := newMemoryCgroup(t, 128<<20)
	reg := testregistry.Start(t)
	var layers []v1.Layer
	for i := range 2 {
		layers = append(layers, randomLayer(t, int64(100+i), 64, 256<<20, imagegen.Uncompressed))
	}
	reg.Push(t, reg.Ref("big/app:1"), mustImage(t, layers))
	d := startDaemon(t, withWrapper(cg.wrapper()...))
	if pid := strconv.Itoa(d.cmd.Process.Pid); !strings.Contains("\n"+cg.read("cgroup.procs")+"\n", "\n"+pid+"\n") {
		t.Fatalf("daemon %s is not in the cgroup (procs: %q)", pid, cg.read("cgroup.procs"))
	}
	d.mustFlick(t, "pull", "-q", reg.Ref("big/app:1"))
	if !hasTag(d.images(t), reg.Ref("big/app:1")) {
		t.Fatal("image missing after pull")
	}
	if cg.v2 {
		t.Logf("memory.peak=%s memory.events: %s", cg.read("memory.peak"), cg.read("memory.events"))
		if strings.Contains(cg.read("memory.events"), "oom_kill 1") {
			t.Fatal("OOM kill inside the cgroup")
		}
	} else {
		t.Logf("max_usage=%s failcnt=%s oom_control: %s", cg.read("memory.max_usage_in_bytes"), cg.read("memory.failcnt"), cg.read("memory.oom_control"))
		if strings.Contains(cg.read("memory.oom_control"), "oom_kill 1") {
			t.Fatal("OOM kill inside the cgroup")
		}
	}
	// The daemon is alive and answering.
	d.mustFlick(t, "version")
}
