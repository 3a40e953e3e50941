package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"time"
)

// An executable rebuilt after a small source change differs from the old one
// all over: code and data move, and every address that points across the move
// changes by the same few values. Byte-matching (zstd with the old file as
// dictionary, rsync blocks) breaks at each such address. Colin Percival's
// bsdiff method instead extends each exact match into an approximate one and
// sends the byte-wise difference new-old over it, which is mostly zeros with
// the same few small values repeating: it compresses to a fraction of a patch.
// This is a Go implementation of that method (suffix array by Larsson and
// Sadakane's qsufsort, the same scan), with Flick's own framing: control
// triples, differences and extra bytes each go in their own zstd stream.

// diffBudget bounds the time spent on one file; bsdiff's scan can go quadratic
// on pathological inputs, and the patch-from result is there to fall back on.
const diffBudget = 20 * time.Second

var errBudget = errors.New("bsdiff: over its time budget")

// bsdiff returns the three streams (control, difference, extra), or
// errBudget.
func bsdiff(ctx context.Context, old, new []byte) (ctrl, diff, extra []byte, err error) {
	deadline := time.Now().Add(diffBudget)
	I := qsufsort(old)
	var cb bytes.Buffer
	db := make([]byte, 0, len(new)/2)
	eb := make([]byte, 0, len(new)/8)
	var vb [binary.MaxVarintLen64]byte
	putCtrl := func(x, y, z int) {
		cb.Write(vb[:binary.PutUvarint(vb[:], uint64(x))])
		cb.Write(vb[:binary.PutUvarint(vb[:], uint64(y))])
		cb.Write(vb[:binary.PutVarint(vb[:], int64(z))])
	}
	oldsize, newsize := len(old), len(new)
	var scan, pos, length, lastscan, lastpos, lastoffset int
	for iter := 0; scan < newsize; iter++ {
		if iter&1023 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
			return nil, nil, nil, errBudget
		}
		oldscore := 0
		scan += length
		scsc := scan
		for ; scan < newsize; scan++ {
			length, pos = search(I, old, new[scan:], 0, oldsize)
			for ; scsc < scan+length; scsc++ {
				if scsc+lastoffset < oldsize && old[scsc+lastoffset] == new[scsc] {
					oldscore++
				}
			}
			if (length == oldscore && length != 0) || length > oldscore+8 {
				break
			}
			if scan+lastoffset < oldsize && old[scan+lastoffset] == new[scan] {
				oldscore--
			}
		}
		if length == oldscore && scan != newsize {
			continue
		}
		s, sf, lenf := 0, 0, 0
		for i := 0; lastscan+i < scan && lastpos+i < oldsize; {
			if old[lastpos+i] == new[lastscan+i] {
				s++
			}
			i++
			if s*2-i > sf*2-lenf {
				sf, lenf = s, i
			}
		}
		lenb := 0
		if scan < newsize {
			s, sb := 0, 0
			for i := 1; scan >= lastscan+i && pos >= i; i++ {
				if old[pos-i] == new[scan-i] {
					s++
				}
				if s*2-i > sb*2-lenb {
					sb, lenb = s, i
				}
			}
		}
		if lastscan+lenf > scan-lenb {
			overlap := (lastscan + lenf) - (scan - lenb)
			s, ss, lens := 0, 0, 0
			for i := 0; i < overlap; i++ {
				if new[lastscan+lenf-overlap+i] == old[lastpos+lenf-overlap+i] {
					s++
				}
				if new[scan-lenb+i] == old[pos-lenb+i] {
					s--
				}
				if s > ss {
					ss, lens = s, i+1
				}
			}
			lenf += lens - overlap
			lenb -= lens
		}
		for i := 0; i < lenf; i++ {
			db = append(db, new[lastscan+i]-old[lastpos+i])
		}
		extraLen := (scan - lenb) - (lastscan + lenf)
		eb = append(eb, new[lastscan+lenf:lastscan+lenf+extraLen]...)
		putCtrl(lenf, extraLen, (pos-lenb)-(lastpos+lenf))
		lastscan, lastpos, lastoffset = scan-lenb, pos-lenb, pos-scan
	}
	return cb.Bytes(), db, eb, nil
}

func matchlen(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// search finds the longest prefix of new that occurs in old, by binary search
// over the suffix array I.
func search(I []int32, old, new []byte, st, en int) (length, pos int) {
	for en-st >= 2 {
		x := st + (en-st)/2
		if bytes.Compare(old[I[x]:], new[:min(len(old)-int(I[x]), len(new))]) < 0 {
			st = x
		} else {
			en = x
		}
	}
	x := matchlen(old[I[st]:], new)
	y := matchlen(old[I[en]:], new)
	if x > y {
		return x, int(I[st])
	}
	return y, int(I[en])
}

// qsufsort builds the suffix array of buf (with the empty suffix first), by
// Larsson and Sadakane's prefix doubling.
func qsufsort(buf []byte) []int32 {
	n := len(buf)
	I := make([]int32, n+1)
	V := make([]int32, n+1)
	var buckets [256]int32
	for _, c := range buf {
		buckets[c]++
	}
	for i := 1; i < 256; i++ {
		buckets[i] += buckets[i-1]
	}
	for i := 255; i > 0; i-- {
		buckets[i] = buckets[i-1]
	}
	buckets[0] = 0
	for i, c := range buf {
		buckets[c]++
		I[buckets[c]] = int32(i)
	}
	I[0] = int32(n)
	for i, c := range buf {
		V[i] = buckets[c]
	}
	V[n] = 0
	for i := 1; i < 256; i++ {
		if buckets[i] == buckets[i-1]+1 {
			I[buckets[i]] = -1
		}
	}
	I[0] = -1
	for h := int32(1); I[0] != -int32(n+1); h += h {
		var l int32
		i := int32(0)
		for i < int32(n+1) {
			if I[i] < 0 {
				l -= I[i]
				i -= I[i]
			} else {
				if l != 0 {
					I[i-l] = -l
				}
				l = V[I[i]] + 1 - i
				split(I, V, i, l, h)
				i += l
				l = 0
			}
		}
		if l != 0 {
			I[i-l] = -l
		}
	}
	for i := 0; i < n+1; i++ {
		I[V[i]] = int32(i)
	}
	return I
}

func split(I, V []int32, start, length, h int32) {
	if length < 16 {
		var j int32
		for k := start; k < start+length; k += j {
			j = 1
			x := V[I[k]+h]
			for i := int32(1); k+i < start+length; i++ {
				if V[I[k+i]+h] < x {
					x = V[I[k+i]+h]
					j = 0
				}
				if V[I[k+i]+h] == x {
					I[k+j], I[k+i] = I[k+i], I[k+j]
					j++
				}
			}
			for i := int32(0); i < j; i++ {
				V[I[k+i]] = k + j - 1
			}
			if j == 1 {
				I[k] = -1
			}
		}
		return
	}
	x := V[I[start+length/2]+h]
	var jj, kk int32
	for i := start; i < start+length; i++ {
		if V[I[i]+h] < x {
			jj++
		}
		if V[I[i]+h] == x {
			kk++
		}
	}
	jj += start
	kk += jj
	i, j, k := start, int32(0), int32(0)
	for i < jj {
		switch v := V[I[i]+h]; {
		case v < x:
			i++
		case v == x:
			I[i], I[jj+j] = I[jj+j], I[i]
			j++
		default:
			I[i], I[kk+k] = I[kk+k], I[i]
			k++
		}
	}
	for jj+j < kk {
		if V[I[jj+j]+h] == x {
			j++
		} else {
			I[jj+j], I[kk+k] = I[kk+k], I[jj+j]
			k++
		}
	}
	if jj > start {
		split(I, V, start, jj-start, h)
	}
	for i := int32(0); i < kk-jj; i++ {
		V[I[jj+i]] = kk - 1
	}
	if jj == kk-1 {
		I[jj] = -1
	}
	if start+length > kk {
		split(I, V, kk, start+length-kk, h)
	}
}

// bspatch rebuilds size bytes from old and the three (decompressed) streams,
// writing them to w. Every control value is checked against the sizes: a
// hostile stream fails, it never reads or writes out of bounds.
func bspatch(w io.Writer, old []byte, size int64, ctrl io.ByteReader, diff, extra io.Reader) error {
	buf := make([]byte, 64<<10)
	var newpos, oldpos int64
	oldsize := int64(len(old))
	for newpos < size {
		x, err1 := binary.ReadUvarint(ctrl)
		y, err2 := binary.ReadUvarint(ctrl)
		z, err3 := binary.ReadVarint(ctrl)
		if err := errors.Join(err1, err2, err3); err != nil {
			return corrupt("diff control stream: %v", unexpected(err))
		}
		if x > uint64(size-newpos) || y > uint64(size-newpos)-x {
			return corrupt("diff control runs past the file's %d bytes", size)
		}
		for n := int64(x); n > 0; {
			c := min(n, int64(len(buf)))
			if _, err := io.ReadFull(diff, buf[:c]); err != nil {
				return corrupt("diff stream: %v", unexpected(err))
			}
			for i := int64(0); i < c; i++ {
				if p := oldpos + i; p >= 0 && p < oldsize {
					buf[i] += old[p]
				}
			}
			if _, err := w.Write(buf[:c]); err != nil {
				return err
			}
			n -= c
			oldpos += c
			newpos += c
		}
		if _, err := io.CopyN(w, extra, int64(y)); err != nil {
			return corrupt("diff extra stream: %v", unexpected(err))
		}
		newpos += int64(y)
		if z < -(1<<40) || z > 1<<40 {
			return corrupt("diff seek out of range")
		}
		oldpos += z
	}
	return nil
}
