package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
)

// Stats describes one encoded target layer.
type Stats struct {
	DiffID      digest.Digest // of the target layer
	TarBytes    int64         // uncompressed target layer
	Entries     int
	Copied      int64 // content bytes taken from the base unchanged
	CopiedFiles int
	Patched     int64 // content bytes rebuilt by patches
	PatchFiles  int
	DiffFiles   int   // of which bsdiff-style
	PatchBytes  int64 // patch frames sent for them
	Literal     int64 // content bytes sent as they are (compressed)
	Headers     int64 // header bytes (compressed with the rest)
}

// The op stream and the bsdiff streams use small windows: the applier's
// decoders hold one window each, and on a hub peak memory matters more than
// the last percent of compression (measured on bench/delta.sh: 4 MiB and
// 1 MiB cost under 1% against 8 MiB).
const (
	streamWindow = 4 << 20
	diffWindow   = 1 << 20
)

// A best-level zstd encoder holds about 30 MB of match tables whatever its
// window, so an Encode keeps a handful and reuses them (patch encoders swap
// their dictionary), instead of making one per file: memory stays bounded
// however many files a layer patches.
func newEncoder(window int, dict []byte) *zstd.Encoder {
	opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(window)}
	if dict != nil {
		opts = append(opts, zstd.WithEncoderDictRaw(0, dict))
	}
	zw, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		panic(err) // only for invalid options
	}
	return zw
}

// plainEncoder compresses a file alone, to judge whether a patch pays; its
// EncodeAll is safe for concurrent use.
var plainEncoder = sync.OnceValue(func() *zstd.Encoder {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		panic(err)
	}
	return enc
})

// memLimit is the largest file content the encoder holds in memory; larger
// files are spooled to disk.
const memLimit = 8 << 20

// minPatch is the smallest file worth a patch; below it, literal bytes in the
// compressed op stream cost less than a frame's overhead.
const minPatch = 256

// Encode writes the delta that rebuilds the target layer tar read from target
// out of basis, and reports what it did.
func Encode(ctx context.Context, target io.Reader, basis *Basis, w io.Writer) (Stats, error) {
	var st Stats
	if _, err := io.WriteString(w, Magic); err != nil {
		return st, err
	}
	// Encoders at the best level allocate tens of MB of tables: reuse them.
	zw := newEncoder(streamWindow, nil)
	zw.Reset(w)
	plain := plainEncoder()
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(target, h)}
	e := &encoder{ctx: ctx, ow: &opWriter{w: zw}, basis: basis, plain: plain, st: &st, r: cr, zw: zw}
	defer e.cleanup()
	s := &splitter{r: cr}
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		ent, err := s.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errTail) {
			// End-of-archive marker, or something the splitter leaves
			// alone: the rest goes verbatim.
			e.literalBytes(ent.Header)
			if err := e.literalStream(cr); err != nil {
				return st, err
			}
			break
		}
		if err != nil {
			return st, err
		}
		st.Entries++
		if err := e.entry(ent); err != nil {
			return st, err
		}
		if e.ow.err != nil {
			return st, e.ow.err
		}
	}
	e.flush()
	e.ow.byte(opEnd)
	sum := h.Sum(nil)
	if e.ow.err == nil {
		_, e.ow.err = zw.Write(sum)
	}
	if e.ow.err != nil {
		return st, e.ow.err
	}
	if err := zw.Close(); err != nil {
		return st, err
	}
	st.DiffID = digest.NewDigestFromBytes(digest.SHA256, sum)
	st.TarBytes = cr.n
	return st, nil
}

type encoder struct {
	zw       *zstd.Encoder
	patchEnc [2]*zstd.Encoder // window 8 MiB; [1] stays nil (64 MiB, not kept)
	diffEnc  *zstd.Encoder
	ctx      context.Context
	ow       *opWriter
	basis    *Basis
	plain    *zstd.Encoder
	st       *Stats
	r        io.Reader
	lit      []byte // pending literal bytes, merged into one op
	spool    *os.File
}

func (e *encoder) cleanup() {
	e.zw.Close()
	for _, z := range append(e.patchEnc[:], e.diffEnc) {
		if z != nil {
			z.Close()
		}
	}
	if e.spool != nil {
		e.spool.Close()
		os.Remove(e.spool.Name())
	}
}

func (e *encoder) literalBytes(b []byte) {
	e.lit = append(e.lit, b...)
	if len(e.lit) >= 1<<20 {
		e.flush()
	}
}

func (e *encoder) flush() {
	if len(e.lit) > 0 {
		e.ow.byte(opLiteral)
		e.ow.bytes(e.lit)
		e.lit = e.lit[:0]
	}
}

// literalStream sends the rest of r as literal bytes.
func (e *encoder) literalStream(r io.Reader) error {
	buf := make([]byte, 1<<20)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			e.literalBytes(buf[:n])
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return e.ow.err
		}
		if err != nil {
			return err
		}
	}
}

func (e *encoder) entry(ent entry) error {
	e.flush()
	e.ow.byte(opHeader)
	e.ow.bytes(ent.Header)
	e.st.Headers += int64(len(ent.Header))
	if ent.Size > 0 {
		if ent.regular() {
			if err := e.content(ent); err != nil {
				return err
			}
		} else {
			if err := e.literalN(ent.Size); err != nil {
				return err
			}
		}
	}
	return e.literalN(ent.Pad)
}

func (e *encoder) literalN(n int64) error {
	if n == 0 {
		return nil
	}
	if n <= memLimit {
		b := make([]byte, n)
		if _, err := io.ReadFull(e.r, b); err != nil {
			return fmt.Errorf("target layer: %w", unexpected(err))
		}
		e.literalBytes(b)
		return e.ow.err
	}
	e.flush()
	e.ow.byte(opLiteral)
	e.ow.uvarint(uint64(n))
	if e.ow.err == nil {
		if _, err := io.CopyN(e.ow.w, e.r, n); err != nil {
			return fmt.Errorf("target layer: %w", unexpected(err))
		}
	}
	return e.ow.err
}

// content encodes one regular file's bytes.
func (e *encoder) content(ent entry) error {
	var (
		data []byte
		sum  [32]byte
		h    = sha256.New()
	)
	if ent.Size <= memLimit {
		data = make([]byte, ent.Size)
		if _, err := io.ReadFull(e.r, data); err != nil {
			return fmt.Errorf("target layer: %s: %w", ent.Name, unexpected(err))
		}
		h.Write(data)
	} else {
		if e.spool == nil {
			f, err := os.CreateTemp(e.basis.dir, "flick-delta-target-*")
			if err != nil {
				return err
			}
			e.spool = f
		}
		if err := e.spool.Truncate(0); err != nil {
			return err
		}
		if _, err := e.spool.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(io.MultiWriter(e.spool, h), e.r, ent.Size); err != nil {
			return fmt.Errorf("target layer: %s: %w", ent.Name, unexpected(err))
		}
	}
	h.Sum(sum[:0])
	if ref, ok := e.basis.byHash[sum]; ok && ref.size == ent.Size {
		e.ow.byte(opCopy)
		e.ow.uvarint(uint64(ref.layer))
		e.ow.bytes(samePath(ref.name, ent.Name))
		e.ow.uvarint(uint64(ent.Size))
		e.st.Copied += ent.Size
		e.st.CopiedFiles++
		return e.ow.err
	}
	if data == nil && ent.Size <= MaxPatchTarget {
		b, err := os.ReadFile(e.spool.Name())
		if err != nil {
			return err
		}
		data = b
	}
	if data != nil {
		if done, err := e.patch(ent, data); done || err != nil {
			return err
		}
		e.literalBytes(data)
		e.st.Literal += ent.Size
		return e.ow.err
	}
	if _, err := e.spool.Seek(0, io.SeekStart); err != nil {
		return err
	}
	e.flush()
	e.ow.byte(opLiteral)
	e.ow.uvarint(uint64(ent.Size))
	if e.ow.err == nil {
		if _, err := io.CopyN(e.ow.w, e.spool, ent.Size); err != nil {
			return err
		}
	}
	e.st.Literal += ent.Size
	return e.ow.err
}

// patch sends data as a zstd frame with a similar base file as dictionary,
// if that beats compressing it alone.
func (e *encoder) patch(ent entry, data []byte) (bool, error) {
	if len(data) < minPatch {
		return false, nil
	}
	ref, ok := e.basis.byPath[ent.Name]
	if !ok || !patchable(ref) {
		ref, ok = e.basis.byBase[path.Base(ent.Name)]
	}
	if !ok || !patchable(ref) {
		return false, nil
	}
	dict := make([]byte, ref.size)
	if _, err := e.basis.spools[ref.layer].ReadAt(dict, ref.off); err != nil {
		return false, err
	}
	frame, err := e.patchFrame(dict, data)
	if err != nil {
		return false, err
	}
	alone := e.plain.EncodeAll(data, nil)
	if len(data) >= minDiff {
		if streams, ok := e.diff(dict, data); ok && diffCost(streams) < min(len(frame), len(alone)) {
			e.flush()
			e.ow.byte(opDiff)
			e.ow.uvarint(uint64(ref.layer))
			e.ow.bytes(samePath(ref.name, ent.Name))
			e.ow.uvarint(uint64(len(data)))
			for _, s := range streams {
				e.ow.bytes(s)
			}
			e.st.Patched += int64(len(data))
			e.st.PatchFiles++
			e.st.DiffFiles++
			e.st.PatchBytes += int64(diffCost(streams))
			return true, e.ow.err
		}
	}
	if len(frame) >= len(alone) {
		return false, nil
	}
	e.flush()
	e.ow.byte(opPatch)
	e.ow.uvarint(uint64(ref.layer))
	e.ow.bytes(samePath(ref.name, ent.Name))
	e.ow.uvarint(uint64(len(data)))
	e.ow.bytes(frame)
	e.st.Patched += int64(len(data))
	e.st.PatchFiles++
	e.st.PatchBytes += int64(len(frame))
	return true, e.ow.err
}

// patchFrame compresses data with dict as raw dictionary, with a window that
// reaches from the end of data back to the start of dict.
func (e *encoder) patchFrame(dict, data []byte) ([]byte, error) {
	i, window := 0, 8<<20
	if patchWindow(int64(len(dict)), int64(len(data))) > 8<<20 {
		i, window = 1, 64<<20
	}
	if i == 1 {
		// Large files are few, and a 64 MiB window costs 200 MB of encoder:
		// use one and let it go.
		enc := newEncoder(window, dict)
		defer enc.Close()
		return enc.EncodeAll(data, nil), nil
	}
	if e.patchEnc[i] == nil {
		e.patchEnc[i] = newEncoder(window, dict)
	} else if err := e.patchEnc[i].ResetWithOptions(nil, zstd.WithEncoderDictRaw(0, dict)); err != nil {
		return nil, err
	}
	return e.patchEnc[i].EncodeAll(data, nil), nil
}

// minDiff is the smallest file worth a bsdiff-style difference (building a
// suffix array costs more than it saves on small files).
const minDiff = 32 << 10

// diff computes the bsdiff streams, compressed, or false if it ran over its
// budget.
func (e *encoder) diff(old, new []byte) ([3][]byte, bool) {
	var out [3][]byte
	ctrl, d, extra, err := bsdiff(e.ctx, old, new)
	if err != nil {
		return out, false
	}
	if e.diffEnc == nil {
		e.diffEnc = newEncoder(diffWindow, nil)
	}
	zw := e.diffEnc
	for i, s := range [][]byte{ctrl, d, extra} {
		var b bytes.Buffer
		zw.Reset(&b)
		zw.Write(s)
		if err := zw.Close(); err != nil {
			return out, false
		}
		out[i] = b.Bytes()
	}
	return out, true
}

func diffCost(s [3][]byte) int { return len(s[0]) + len(s[1]) + len(s[2]) + 12 }

func patchable(ref fileRef) bool { return ref.size >= 64 && ref.size <= MaxPatchBase }

func samePath(base, target string) []byte {
	if base == target {
		return nil
	}
	return []byte(base)
}
