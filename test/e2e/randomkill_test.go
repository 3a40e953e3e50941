package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/testregistry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestRandomKillsDuringUpdate is the plain-crash half of the power-cut proof:
// the daemon is SIGKILLed at a random instant of an image update (a delta
// pull, falling back to layers when the delta is not there yet), with the
// page cache intact, as a crash or an OOM kill leaves it. After each restart
// the store checks clean (leftovers are cleaned by the next start), the tag
// names the old image or the new one (the new one if the pull had reported
// success), and pulling again completes the update.
//
// make test runs 8 kills; FLICK_POWERCUT=full runs 100. The seed is logged
// (FLICK_POWERCUT_SEED replays it).
func TestRandomKillsDuringUpdate(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	shared := randomLayer(t, 101, 4, 128<<10, imagegen.Gzip)
	bin := imagegen.Program(10, 1<<20)
	bin2 := append(append([]byte(nil), bin[:5000]...), append([]byte("v2"), bin[5000:]...)...)
	app := func(b []byte) v1.Layer {
		return fileLayer(t, imagegen.Gzip,
			imagegen.File{Name: "app/", Typeflag: '5', Mode: 0o755},
			imagegen.File{Name: "app/server", Body: b, Mode: 0o755},
			imagegen.File{Name: "app/data.bin", Body: imagegen.Program(11, 2<<20), Mode: 0o644})
	}
	img1 := mustImage(t, []v1.Layer{shared, app(bin)})
	img2 := mustImage(t, []v1.Layer{shared, app(bin2), randomLayer(t, 102, 6, 1<<20, imagegen.Gzip)})
	ref := reg.Ref("kill/app:stable")
	d1, _ := img1.Digest()
	reg.Push(t, reg.Ref("kill/app:1"), img1)
	reg.Push(t, ref, img2)
	byDigest := reg.Ref("kill/app@" + d1.String())
	if r := run(t, nil, flickBin(t), "delta", "create", "--push", byDigest, ref); r.Code != 0 {
		t.Fatalf("delta create: %s", r)
	}
	id1, _ := img1.ConfigName()
	id2, _ := img2.ConfigName()
	pc := &powerCut{ref: ref, v1ID: id1.String(), v2ID: id2.String()}

	// How long an uncut update takes here bounds the kill instants.
	d := startDaemon(t)
	d.mustFlick(t, "pull", "-q", byDigest)
	start := time.Now()
	d.mustFlick(t, "pull", "-q", ref)
	span := time.Since(start)
	if !strings.Contains(d.Log(), "pulled with a delta") {
		t.Fatalf("the uncut update did not use the delta:\n%s", tailString(d.Log(), 2000))
	}
	d.Stop()

	kills := 8
	if os.Getenv("FLICK_POWERCUT") == "full" {
		kills = 100
	}
	seed, err := strconv.ParseUint(os.Getenv("FLICK_POWERCUT_SEED"), 10, 64)
	if err != nil {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("uncut update: %v; %d kills, FLICK_POWERCUT_SEED=%d", span.Round(time.Millisecond), kills, seed)
	r := rand.New(rand.NewPCG(seed, 7))
	var summary []string
	for i := range kills {
		at := time.Duration(r.Int64N(int64(span) * 3 / 2))
		t.Run(fmt.Sprintf("kill%02d_at_%dms", i, at.Milliseconds()), func(t *testing.T) {
			d := startDaemon(t)
			d.mustFlick(t, "pull", "-q", byDigest)
			d.mustFlick(t, "tag", byDigest, ref)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, flickBin(t), "-H", d.Host(), "pull", "-q", ref)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(at)
			d.Kill()
			pullErr := cmd.Wait()
			d.start()
			check := func(stage string) {
				rep, res := pc.check(t, d)
				for _, p := range rep.Problems {
					if !strings.HasPrefix(p.Kind, "orphan-") {
						t.Errorf("%s: %s %s: %s", stage, p.Kind, p.Object, p.Detail)
					}
				}
				if res.Code != 0 && len(rep.Problems) == 0 {
					t.Errorf("%s: system check: %s", stage, res)
				}
			}
			check("after the kill")
			tag := pc.tagState(t, d)
			switch {
			case tag == "v1" && pullErr == nil:
				t.Errorf("the pull reported success before the kill, but the tag is back at v1")
			case tag != "v1" && tag != "v2":
				t.Errorf("the tag names %s, neither the old nor the new image", tag)
			}
			d.Restart()
			if rep, _ := pc.check(t, d); len(rep.Problems) > 0 {
				t.Errorf("leftovers after a second start: %+v", rep.Problems)
			}
			d.mustFlick(t, "pull", "-q", ref)
			if tag := pc.tagState(t, d); tag != "v2" {
				t.Errorf("after pulling again the tag names %s", tag)
			}
			check("after pulling again")
			summary = append(summary, fmt.Sprintf("%dms:%s", at.Milliseconds(), tag))
			d.Stop()
		})
	}
	t.Logf("kills (instant:tag after restart): %s", strings.Join(summary, " "))
}
