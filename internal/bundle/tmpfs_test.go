package bundle

import "testing"

func TestParseTmpfs(t *testing.T) {
	o, err := ParseTmpfs(nil)
	if err != nil || o.Exec || o.Suid || o.Dev || o.ReadOnly || o.Data != "" {
		t.Fatalf("defaults: %+v %v; want noexec, nosuid, nodev, rw", o, err)
	}
	o, err = ParseTmpfs([]string{"rw", "exec", "size=64m", "mode=1777", "uid=1000", "noatime"})
	if err != nil || !o.Exec || o.Suid || o.Data != "size=64m,mode=1777,uid=1000" {
		t.Fatalf("options: %+v %v", o, err)
	}
	for _, bad := range []string{"size", "bogus", "size=1m,mode=1", "context=x"} {
		if _, err := ParseTmpfs([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
