package logfile

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// The monitor writes its last lines and then reports the exit; a follower
// that saw EOF just before those lines and asks done() just after must
// still deliver them. done() here writes the line itself when first asked:
// exactly that interleaving, every time.
func TestReadDeliversWhatCameBeforeDone(t *testing.T) {
	for _, created := range []bool{true, false} {
		bundle := t.TempDir()
		path := filepath.Join(bundle, "container.log")
		var w *Writer
		if created { // the log exists, empty, when the follower starts
			var err error
			if w, err = Open(path, 0, 0); err != nil {
				t.Fatal(err)
			}
		}
		asked := 0
		done := func() bool {
			asked++
			if asked == 1 {
				if w == nil {
					var err error
					if w, err = Open(path, 0, 0); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Append("stdout", []byte("last words\n")); err != nil {
					t.Fatal(err)
				}
			}
			return true
		}
		var got []string
		err := Read(context.Background(), path, Follow{On: true, Done: done}, func(e Entry) error {
			got = append(got, e.Stream+":"+e.Log)
			return nil
		})
		w.Close()
		if err != nil || strings.Join(got, "|") != "stdout:last words\n" {
			t.Fatalf("log created before the follower %v: got %q, %v; want the last line", created, got, err)
		}
	}
}
