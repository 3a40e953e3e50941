package outbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

const fuzzSeg = "00000000000000000001.seg"

// FuzzRecover feeds arbitrary bytes as a segment file (and as the ack log).
// Open must not panic or fail; whatever it keeps of the segment is a prefix of
// the input, and if it keeps less than all of it, it reports the cut. Reading
// back what was recovered finds no bad record, appends work, and a second Open
// finds nothing to repair.
func FuzzRecover(f *testing.F) {
	f.Fuzz(func(t *testing.T, seg, acks []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, fuzzSeg)
		if err := os.WriteFile(p, seg, 0o600); err != nil {
			t.Fatal(err)
		}
		if len(acks) > 0 {
			if err := os.WriteFile(filepath.Join(dir, "acks.log"), acks, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cfg := Config{Dir: dir, MaxBytes: 1 << 20, SegmentSize: 64 << 10}
		o, rep, err := Open(cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		segCut, removed := false, false
		for _, c := range rep.Corrupt {
			if c.File == fuzzSeg {
				segCut, removed = true, c.Offset == 0
				if c.Offset+c.Bytes != int64(len(seg)) {
					t.Fatalf("cut %+v does not end at the file's end %d", c, len(seg))
				}
			}
		}
		kept, err := os.ReadFile(p)
		switch {
		case removed:
			// A bad header: the file was removed; a new segment may have its name.
		case err == nil:
			if !bytes.HasPrefix(seg, kept) {
				t.Fatal("recovered segment is not a prefix of the input")
			}
			if len(kept) < len(seg) && !segCut {
				t.Fatalf("cut %d bytes without reporting it: %v", len(seg)-len(kept), rep)
			}
		case os.IsNotExist(err):
			if !segCut && rep.Removed == 0 {
				t.Fatalf("segment vanished without a report: %v", rep)
			}
		default:
			t.Fatal(err)
		}
		got := o.Next(1 << 20)
		if len(got) != rep.Records || o.Stats().Corrupt != 0 {
			t.Fatalf("Next returned %d of %d recovered (%d corrupt)", len(got), rep.Records, o.Stats().Corrupt)
		}
		m, err := o.Append(Message{Topic: "after", Payload: []byte("x")})
		if err != nil {
			t.Fatalf("Append after recovery: %v", err)
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		o, rep2, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		if rep2.Truncated() {
			t.Fatalf("second Open repaired again: %v (first: %v)", rep2, rep)
		}
		got2 := o.Next(1 << 20)
		if len(got2) != len(got)+1 || got2[len(got2)-1].ID != m.ID {
			t.Fatalf("second Open: %d messages, want %d", len(got2), len(got)+1)
		}
	})
}

// seedCorpus returns the committed seeds, built from a real outbox.
func seedCorpus(t *testing.T) map[string][2][]byte {
	dir := t.TempDir()
	o, _, err := Open(Config{Dir: dir, MaxBytes: 1 << 20, SegmentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var ms []Message
	for i := 0; i < 3; i++ {
		m, err := o.Append(Message{Topic: "s/t", Payload: []byte(fmt.Sprintf("payload %d", i)), Priority: uint8(i * 4),
			Attrs: map[string]string{"content-type": "text/plain"}})
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	if _, err := o.Append(Message{ID: "custom", Topic: "c"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(ms[1].ID); err != nil {
		t.Fatal(err)
	}
	o.Close()
	seg, err := os.ReadFile(filepath.Join(dir, fuzzSeg))
	if err != nil {
		t.Fatal(err)
	}
	acks, _ := os.ReadFile(filepath.Join(dir, "acks.log"))
	flipped := bytes.Clone(seg)
	flipped[len(flipped)-5] ^= 1
	return map[string][2][]byte{
		"valid":           {seg, acks},
		"valid-no-acks":   {seg, nil},
		"torn":            {seg[:len(seg)-7], acks},
		"flipped":         {flipped, acks},
		"header-only":     {seg[:segHeaderSize], nil},
		"zero-tail":       {append(bytes.Clone(seg), make([]byte, 64)...), acks},
		"empty":           {nil, nil},
		"garbage":         {[]byte("FLKOBX01 but then nothing valid at all........"), []byte("FLKACK01\x05\x00")},
		"torn-ack":        {seg, acks[:len(acks)-1]},
		"header-bad-crc":  {append(append(bytes.Clone(seg[:28]), 0, 0, 0, 0), seg[32:]...), acks},
		"other-first-seq": {append(segHeader(7, 1), seg[segHeaderSize:]...), nil},
	}
}

// TestWriteFuzzCorpus rewrites the seeds in testdata/fuzz/FuzzRecover when
// OUTBOX_WRITE_CORPUS=1 (go test runs them as FuzzRecover's subtests).
func TestWriteFuzzCorpus(t *testing.T) {
	seeds := seedCorpus(t)
	if os.Getenv("OUTBOX_WRITE_CORPUS") != "1" {
		return
	}
	d := filepath.Join("testdata", "fuzz", "FuzzRecover")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\n", s[0], s[1])
		if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
