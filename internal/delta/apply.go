package delta

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
)

// Base gives the applier the files of the base layers a delta reads.
type Base interface {
	// Open returns base layer i's regular file at p (a cleaned path relative
	// to the layer root) and its size.
	Open(layer int, p string) (io.ReadCloser, int64, error)
	// Layers is how many base layers there are.
	Layers() int
}

// MaxOuterWindow bounds the zstd window of the op stream and of bsdiff
// streams (the encoder uses 4 MiB and 1 MiB).
const MaxOuterWindow = 16 << 20

// Apply rebuilds the target layer tar that blob describes, writing it to out,
// and returns its digest (which the caller compares with the diffID it
// expects). Every failure is an error; nothing in blob is trusted: sizes are
// bounded, paths resolve inside the base (Base's duty), and the rebuilt bytes
// must hash to what the blob's end record claims.
func Apply(ctx context.Context, blob io.Reader, base Base, out io.Writer) (digest.Digest, error) {
	var magic [len(Magic)]byte
	if _, err := io.ReadFull(blob, magic[:]); err != nil || string(magic[:]) != Magic {
		return "", corrupt("not a Flick delta (bad magic)")
	}
	zr, err := zstd.NewReader(blob, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(MaxOuterWindow))
	if err != nil {
		return "", err
	}
	defer zr.Close()
	or := &opReader{r: bufio.NewReaderSize(zr, 64<<10)}
	a := &applier{}
	defer a.close()
	h := sha256.New()
	w := io.MultiWriter(out, h)
	var last string
	for n := 0; ; n++ {
		if n&255 == 0 {
			if err := ctx.Err(); err != nil {
				return "", err
			}
		}
		op, err := or.r.ReadByte()
		if err != nil {
			return "", corrupt("op stream ends without an end record: %v", unexpected(err))
		}
		switch op {
		case opHeader:
			b, err := or.bytes("header", maxHeader)
			if err != nil {
				return "", err
			}
			hdr, err := tar.NewReader(bytes.NewReader(b)).Next()
			if err != nil {
				return "", corrupt("header op is not a tar header: %v", err)
			}
			last = cleanName(hdr.Name)
			if _, err := w.Write(b); err != nil {
				return "", err
			}
		case opLiteral:
			n, err := or.uvarint("literal length", maxPatchOut)
			if err != nil {
				return "", err
			}
			if _, err := io.CopyN(w, or.r, int64(n)); err != nil {
				return "", fmt.Errorf("literal: %w", wrapShort(err))
			}
		case opCopy, opPatch, opDiff:
			layer, err := or.uvarint("base layer", uint64(base.Layers()-1))
			if err != nil {
				return "", err
			}
			p, err := or.bytes("path", maxPath)
			if err != nil {
				return "", err
			}
			name := string(p)
			if name == "" {
				name = last
			}
			size, err := or.uvarint("size", maxPatchOut)
			if err != nil {
				return "", err
			}
			if op == opCopy {
				err = copyBase(w, base, int(layer), name, int64(size))
			} else if size > MaxPatchTarget {
				err = corrupt("patch output of %d bytes is over the %d-byte limit", size, MaxPatchTarget)
			} else if op == opDiff {
				err = a.diffBase(w, or, base, int(layer), name, int64(size))
			} else {
				err = a.patchBase(w, or, base, int(layer), name, int64(size))
			}
			if err != nil {
				return "", err
			}
		case opEnd:
			var sum [32]byte
			if _, err := io.ReadFull(or.r, sum[:]); err != nil {
				return "", corrupt("truncated end record")
			}
			if _, err := or.r.ReadByte(); err != io.EOF {
				return "", corrupt("data after the end record")
			}
			got := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
			want := digest.NewDigestFromBytes(digest.SHA256, sum[:])
			if got != want {
				return got, corrupt("rebuilt layer hashes to %s, the delta promised %s (the base differs from the one the delta was made against)", got, want)
			}
			return got, nil
		default:
			return "", corrupt("unknown op %d", op)
		}
	}
}

func wrapShort(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corrupt("truncated")
	}
	return err
}

func copyBase(w io.Writer, base Base, layer int, name string, size int64) error {
	f, have, err := base.Open(layer, name)
	if err != nil {
		return fmt.Errorf("base layer %d: %w", layer, err)
	}
	defer f.Close()
	if have != size {
		return corrupt("base file %s is %d bytes, the delta copies %d", name, have, size)
	}
	if _, err := io.CopyN(w, f, size); err != nil {
		return fmt.Errorf("copy base file %s: %w", name, err)
	}
	return nil
}

// applier holds what patches reuse within one layer, so that a layer with
// many patched files does not leave a trail of megabyte buffers for the GC
// (peak memory is what matters on a hub).
type applier struct {
	scratch []byte
	dec     [3]*zstd.Decoder
	patch   *zstd.Decoder
}

func (a *applier) close() {
	for _, d := range append(a.dec[:], a.patch) {
		if d != nil {
			d.Close()
		}
	}
}

// readBase reads a base file whole, as a patch's reference.
func (a *applier) readBase(base Base, layer int, name string) ([]byte, error) {
	f, have, err := base.Open(layer, name)
	if err != nil {
		return nil, fmt.Errorf("base layer %d: %w", layer, err)
	}
	defer f.Close()
	if have > MaxPatchBase {
		return nil, corrupt("patch base %s is %d bytes, over the %d-byte limit", name, have, MaxPatchBase)
	}
	if int64(cap(a.scratch)) < have {
		a.scratch = nil // let the old one go before the new one is made
		a.scratch = make([]byte, have)
	}
	b := a.scratch[:have]
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("read base file %s: %w", name, err)
	}
	return b, nil
}

func (a *applier) diffBase(w io.Writer, or *opReader, base Base, layer int, name string, size int64) error {
	var streams [3][]byte
	for i, what := range []string{"diff control", "diff", "diff extra"} {
		b, err := or.bytes(what, MaxPatchTarget+(1<<20))
		if err != nil {
			return err
		}
		streams[i] = b
	}
	old, err := a.readBase(base, layer, name)
	if err != nil {
		return err
	}
	for i := range a.dec {
		if a.dec[i] == nil {
			d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(MaxOuterWindow))
			if err != nil {
				return err
			}
			a.dec[i] = d
		}
		if err := a.dec[i].Reset(bytes.NewReader(streams[i])); err != nil {
			return corrupt("diff stream: %v", err)
		}
	}
	if err := bspatch(w, old, size, bufio.NewReader(a.dec[0]), a.dec[1], a.dec[2]); err != nil {
		return fmt.Errorf("diff for %s: %w", name, err)
	}
	return nil
}

func (a *applier) patchBase(w io.Writer, or *opReader, base Base, layer int, name string, size int64) error {
	frame, err := or.bytes("patch", MaxPatchBase+(64<<20))
	if err != nil {
		return err
	}
	dict, err := a.readBase(base, layer, name)
	if err != nil {
		return err
	}
	if len(dict) < 8 {
		// zstd needs a dictionary of at least 8 bytes; the encoder never
		// patches against a smaller one.
		return corrupt("patch base %s is too small", name)
	}
	if a.patch == nil {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(patchWindow(MaxPatchBase, MaxPatchTarget)))
		if err != nil {
			return err
		}
		a.patch = d
	}
	zr := a.patch
	if err := zr.ResetWithOptions(bytes.NewReader(frame), zstd.WithDecoderDictRaw(0, dict)); err != nil {
		return corrupt("patch for %s: %v", name, err)
	}
	n, err := io.CopyN(w, zr, size)
	if err != nil {
		return corrupt("patch for %s: %v (%d of %d bytes)", name, err, n, size)
	}
	if m, _ := io.CopyN(io.Discard, zr, 1); m != 0 {
		return corrupt("patch for %s yields more than %d bytes", name, size)
	}
	return nil
}

// patchWindow is the zstd window a patch needs: the dictionary and the output
// must both be in reach.
func patchWindow(dict, out int64) uint64 {
	need := dict + out
	w := uint64(1 << 10)
	for int64(w) < need && w < 1<<30 {
		w <<= 1
	}
	return w
}
