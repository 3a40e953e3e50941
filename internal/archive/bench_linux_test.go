//go:build linux

package archive

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkApply extracts layers of many small files and of one big file,
// with and without write-behind, and reports throughput (MB/s of tar
// stream).
func BenchmarkApply(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	small := make([]tentry, 0, 211)
	for d := 0; d < 10; d++ {
		small = append(small, tdir(fmt.Sprintf("d%d/", d), 0o755))
		for f := 0; f < 20; f++ {
			body := make([]byte, 64<<10)
			rng.Read(body)
			e := tfile(fmt.Sprintf("d%d/f%d", d, f), "", 0o644)
			e.hdr.Size, e.body = int64(len(body)), body
			small = append(small, e)
		}
	}
	bigBody := make([]byte, 32<<20)
	rng.Read(bigBody)
	big := tfile("big", "", 0o644)
	big.hdr.Size, big.body = int64(len(bigBody)), bigBody

	layers := []struct {
		name string
		tar  []byte
	}{
		{"200x64KiB", mkTar(b, small...)},
		{"1x32MiB", mkTar(b, big)},
	}
	for _, l := range layers {
		for _, wb := range []int64{0, DefaultWriteBehind} {
			b.Run(fmt.Sprintf("%s/writebehind=%d", l.name, wb), func(b *testing.B) {
				dir := b.TempDir()
				b.SetBytes(int64(len(l.tar)))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					root := filepath.Join(dir, fmt.Sprint(i))
					if err := os.Mkdir(root, 0o755); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if _, err := Apply(context.Background(), root, bytes.NewReader(l.tar), Options{WriteBehind: wb, NoChown: true}); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if err := os.RemoveAll(root); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		}
	}
}
