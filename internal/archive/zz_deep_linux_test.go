//go:build linux

package archive

import (
	"strings"
	"testing"
	"time"
)

func TestZZDeep(t *testing.T) {
	for _, n := range []int{100, 500, 1000, 2040} {
		l := newLayout(t)
		data := mkTar(t, tfile(strings.Repeat("a/", n)+"f", "x", 0o644), tfile(strings.Repeat("a/", n)+"g", "x", 0o644))
		t0 := time.Now()
		_, err := apply(t, l.root, data, Options{})
		t1 := time.Now()
		fuzzApplyOnce(t, data)
		t.Logf("depth %d: apply %v err=%v; fuzzApplyOnce %v", n, t1.Sub(t0), err, time.Since(t1))
	}
}
