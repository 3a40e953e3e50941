package container

import (
	"reflect"
	"testing"
)

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "MODE=image", "A=1"}, []string{"MODE=given", "B=2", "PATH=/usr/bin"})
	want := []string{"PATH=/usr/bin", "MODE=given", "A=1", "B=2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("mergeEnv: %q, want %q", got, want)
	}
}

func TestAnonName(t *testing.T) {
	if !anonName("5604421ffa59e95adc4c12b31e248b6fb9bc56653ff05b4825f3260eecbdd28c") || anonName("data") ||
		anonName("5604421ffa59e95adc4c12b31e248b6fb9bc56653ff05b4825f3260eecbdd28z") {
		t.Fatal("anonName")
	}
}
