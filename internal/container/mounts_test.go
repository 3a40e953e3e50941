package container

import (
	"reflect"
	"testing"

	"github.com/flick-edge/flick/internal/bundle"
)

func TestMergeEnv(t *testing.T) {
	got := bundle.MergeEnv([]string{"PATH=/bin", "MODE=image", "A=1"}, []string{"MODE=given", "B=2", "PATH=/usr/bin"})
	want := []string{"PATH=/usr/bin", "MODE=given", "A=1", "B=2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MergeEnv: %q, want %q", got, want)
	}
}
