package delta

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// executable makes a fake program: code words with embedded 4-byte
// addresses into itself, as a linker lays them out.
func executable(seed uint64, funcs int, insertAt int) []byte {
	r := rand.New(rand.NewPCG(seed, 4))
	sizes := make([]int, funcs)
	for i := range sizes {
		sizes[i] = 200 + r.IntN(400)
		if i == insertAt {
			sizes[i] += 37 // the one-line change
		}
	}
	offs := make([]int, funcs+1)
	for i, s := range sizes {
		offs[i+1] = offs[i] + s
	}
	out := make([]byte, offs[funcs])
	cr := rand.New(rand.NewPCG(seed, 5)) // the same code either way
	for i := 0; i < funcs; i++ {
		p := offs[i]
		for p+5 <= offs[i+1] {
			if cr.IntN(4) == 0 {
				out[p] = 0xe8 // call target function
				binary.LittleEndian.PutUint32(out[p+1:], uint32(offs[cr.IntN(funcs)]))
				p += 5
			} else {
				out[p] = byte(cr.IntN(32))
				p++
			}
		}
	}
	return out
}

func TestSuffixArray(t *testing.T) {
	for _, s := range []string{"", "a", "banana", "mississippi", string(executable(1, 20, -1))} {
		b := []byte(s)
		I := qsufsort(b)
		if len(I) != len(b)+1 || int(I[0]) != len(b) {
			t.Fatalf("%q: bad array head %v", s, I[:1])
		}
		for i := 1; i < len(I); i++ {
			if bytes.Compare(b[I[i-1]:], b[I[i]:]) >= 0 {
				t.Fatalf("%q: suffixes %d and %d out of order", s, I[i-1], I[i])
			}
		}
	}
}

func TestExecutableDiff(t *testing.T) {
	old := executable(7, 400, -1)
	new := executable(7, 400, 100)
	base := [][]byte{mktar(t, []file{{name: "app/server", body: old}}, tar.FormatUnknown)}
	target := mktar(t, []file{{name: "app/server", body: new}}, tar.FormatUnknown)
	blob, st, basis := encode(t, base, target)
	got, err := apply(t, blob, basis)
	if err != nil || !bytes.Equal(got, target) {
		t.Fatalf("round trip: %v", err)
	}
	if st.DiffFiles != 1 {
		t.Fatalf("the executable was not sent as a bsdiff difference: %+v", st)
	}
	// What zstd patch-from alone would send.
	ctrl, diff, extra, err := bsdiff(context.Background(), old, new)
	if err != nil {
		t.Fatal(err)
	}
	var rebuilt bytes.Buffer
	if err := bspatch(&rebuilt, old, int64(len(new)), bufio.NewReader(bytes.NewReader(ctrl)), bytes.NewReader(diff), bytes.NewReader(extra)); err != nil || !bytes.Equal(rebuilt.Bytes(), new) {
		t.Fatalf("bspatch: %v", err)
	}
	t.Logf("%d-byte program: delta %d bytes (%d bytes of patch)", len(new), len(blob), st.PatchBytes)
}

func TestBspatchRefusesHostileControls(t *testing.T) {
	old := []byte("0123456789")
	var c bytes.Buffer
	var vb [binary.MaxVarintLen64]byte
	for _, v := range []uint64{1 << 40, 0} {
		c.Write(vb[:binary.PutUvarint(vb[:], v)])
	}
	c.Write(vb[:binary.PutVarint(vb[:], 0)])
	err := bspatch(&bytes.Buffer{}, old, 5, bufio.NewReader(&c), bytes.NewReader(nil), bytes.NewReader(nil))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("want a corrupt-delta error, got %v", err)
	}
	// Reads before or after the old file add nothing (as bspatch does) and
	// never panic.
	c.Reset()
	for _, v := range []uint64{4, 0} {
		c.Write(vb[:binary.PutUvarint(vb[:], v)])
	}
	c.Write(vb[:binary.PutVarint(vb[:], -100)])
	for _, v := range []uint64{4, 0} {
		c.Write(vb[:binary.PutUvarint(vb[:], v)])
	}
	c.Write(vb[:binary.PutVarint(vb[:], 0)])
	var out bytes.Buffer
	if err := bspatch(&out, old, 8, bufio.NewReader(&c), bytes.NewReader(make([]byte, 8)), bytes.NewReader(nil)); err != nil || out.String() != "0123\x00\x00\x00\x00" {
		t.Fatalf("got %q, %v", out.String(), err)
	}
}
