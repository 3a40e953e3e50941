// Package imagegen builds container images for tests, as go-containerregistry
// v1.Image and v1.ImageIndex values.
//
// Layers are generated, not stored: a layer keeps a function that writes its
// tar stream, computes its digests in one streaming pass when it is built, and
// writes the stream again, on the fly, each time Compressed or Uncompressed is
// called. A RandomLayer of a gigabyte therefore costs a gigabyte of CPU work
// per read but only a few kilobytes of memory.
//
// Everything is deterministic: the same inputs give the same bytes and the
// same digests, on every run.
package imagegen

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression selects how a generated layer's blob is compressed.
type Compression int

// The compressions. Gzip is the zero value.
const (
	// Gzip compresses with gzip; media type
	// application/vnd.docker.image.rootfs.diff.tar.gzip, or
	// application/vnd.oci.image.layer.v1.tar+gzip in an OCI image.
	Gzip Compression = iota
	// Zstd compresses with zstd; media type
	// application/vnd.oci.image.layer.v1.tar+zstd.
	Zstd
	// Uncompressed stores the tar as is; media type
	// application/vnd.docker.image.rootfs.diff.tar, or
	// application/vnd.oci.image.layer.v1.tar in an OCI image.
	Uncompressed
)

// String returns "gzip", "zstd" or "uncompressed".
func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case Uncompressed:
		return "uncompressed"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// Epoch is the modification time given to entries whose File.ModTime is zero,
// and the creation time written in image configs.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// File is one tar entry of a layer built by Layer.
//
// The entry is written exactly as described, with these defaults only: a zero
// Typeflag means a regular file (tar.TypeReg), or a directory (tar.TypeDir) if
// Name ends in "/"; a zero Mode means 0644, or 0755 for a directory; a zero
// ModTime means Epoch. The entry's size is len(Body), whatever its type.
// Each Xattrs entry is written as a PAX record "SCHILY.xattr.NAME".
type File struct {
	Name     string
	Mode     int64
	Body     []byte
	Typeflag byte
	Linkname string
	Uid, Gid int
	ModTime  time.Time
	Xattrs   map[string]string
	Devmajor int64
	Devminor int64
}

func (f *File) header() *tar.Header {
	h := &tar.Header{
		Name:     f.Name,
		Mode:     f.Mode,
		Typeflag: f.Typeflag,
		Linkname: f.Linkname,
		Uid:      f.Uid,
		Gid:      f.Gid,
		ModTime:  f.ModTime,
		Size:     int64(len(f.Body)),
		Devmajor: f.Devmajor,
		Devminor: f.Devminor,
	}
	if h.Typeflag == 0 {
		h.Typeflag = tar.TypeReg
		if strings.HasSuffix(f.Name, "/") {
			h.Typeflag = tar.TypeDir
		}
	}
	if h.Mode == 0 {
		h.Mode = 0o644
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
	}
	if h.ModTime.IsZero() {
		h.ModTime = Epoch
	}
	if len(f.Xattrs) > 0 {
		h.PAXRecords = make(map[string]string, len(f.Xattrs))
		for k, v := range f.Xattrs {
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	return h
}

// Layer builds a layer whose tar holds files, written in order and exactly as
// given (see File): names are not cleaned, so hostile names such as
// "../../etc/passwd" or "/abs" are written as they are.
func Layer(files []File, c Compression) (v1.Layer, error) {
	files = append([]File(nil), files...)
	return newGenLayer(func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for i := range files {
			f := &files[i]
			if err := tw.WriteHeader(f.header()); err != nil {
				return fmt.Errorf("imagegen: entry %d (%q): %w", i, f.Name, err)
			}
			if len(f.Body) > 0 {
				if _, err := tw.Write(f.Body); err != nil {
					return fmt.Errorf("imagegen: entry %d (%q): %w", i, f.Name, err)
				}
			}
		}
		return tw.Close()
	}, c)
}

// FromTar builds a layer from an uncompressed tar stream, which open must be
// able to give any number of times (for example by opening a file); the
// stream is compressed with c. Nothing is held in memory.
func FromTar(open func() (io.ReadCloser, error), c Compression) (v1.Layer, error) {
	return newGenLayer(func(w io.Writer) error {
		rc, err := open()
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(w, rc)
		return err
	}, c)
}

// RandomLayer builds a layer of nFiles regular files, spread over nested
// directories under "rand-SEED/", whose contents are pseudo-random (and so
// incompressible) bytes derived from seed and total exactly size bytes.
// The same arguments always give the same layer. The content is generated on
// the fly each time the layer is read, so size may be many gigabytes.
func RandomLayer(seed int64, nFiles int, size int64, c Compression) (v1.Layer, error) {
	if nFiles <= 0 {
		return nil, fmt.Errorf("imagegen: RandomLayer: nFiles must be positive, got %d", nFiles)
	}
	if size < 0 {
		return nil, fmt.Errorf("imagegen: RandomLayer: negative size %d", size)
	}
	sizes := randomSizes(seed, nFiles, size)
	top := fmt.Sprintf("rand-%d", seed)
	return newGenLayer(func(w io.Writer) error {
		tw := tar.NewWriter(w)
		dirs := map[string]bool{}
		var mkdir func(d string) error
		mkdir = func(d string) error {
			if d == "." || dirs[d] {
				return nil
			}
			if err := mkdir(path.Dir(d)); err != nil {
				return err
			}
			dirs[d] = true
			return tw.WriteHeader(&tar.Header{
				Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: Epoch,
				Format: tar.FormatPAX,
			})
		}
		buf := make([]byte, 64<<10)
		for i, n := range sizes {
			dir := fmt.Sprintf("%s/a%02d/b%02d", top, i%8, (i/8)%8)
			if err := mkdir(dir); err != nil {
				return err
			}
			name := fmt.Sprintf("%s/f%07d.bin", dir, i)
			if err := tw.WriteHeader(&tar.Header{
				Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: n, ModTime: Epoch,
				Format: tar.FormatPAX,
			}); err != nil {
				return err
			}
			rng := fileRand(seed, i)
			for left := n; left > 0; {
				chunk := buf
				if int64(len(chunk)) > left {
					chunk = chunk[:left]
				}
				_, _ = rng.Read(chunk)
				if _, err := tw.Write(chunk); err != nil {
					return err
				}
				left -= int64(len(chunk))
			}
		}
		return tw.Close()
	}, c)
}

// randomSizes splits total into n file sizes between about half and one and
// a half times the mean, deterministically from seed.
func randomSizes(seed int64, n int, total int64) []int64 {
	r := rand.New(rand.NewPCG(uint64(seed), 0x696d61676567656e)) // "imagegen"
	weights := make([]float64, n)
	var sum float64
	for i := range weights {
		weights[i] = 0.5 + r.Float64()
		sum += weights[i]
	}
	sizes := make([]int64, n)
	var used int64
	for i := range sizes {
		sizes[i] = int64(float64(total) * weights[i] / sum)
		used += sizes[i]
	}
	sizes[n-1] += total - used // rounding leftovers
	return sizes
}

// fileRand is the content source of file i of the random layer seeded seed.
func fileRand(seed int64, i int) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[0:], uint64(seed))
	binary.LittleEndian.PutUint64(s[8:], uint64(i))
	copy(s[16:], "imagegen.random")
	return rand.NewChaCha8(s)
}

// genLayer is a layer whose uncompressed tar is written by gen.
type genLayer struct {
	gen       func(io.Writer) error
	comp      Compression
	mediaType types.MediaType // Docker flavour for Gzip and Uncompressed
	digest    v1.Hash
	diffID    v1.Hash
	size      int64
}

var _ v1.Layer = (*genLayer)(nil)

func newGenLayer(gen func(io.Writer) error, c Compression) (*genLayer, error) {
	l := &genLayer{gen: gen, comp: c}
	switch c {
	case Gzip:
		l.mediaType = types.DockerLayer
	case Zstd:
		l.mediaType = types.OCILayerZStd
	case Uncompressed:
		l.mediaType = types.DockerUncompressedLayer
	default:
		return nil, fmt.Errorf("imagegen: unknown compression %v", c)
	}
	diff, blob := sha256.New(), sha256.New()
	cnt := &countingWriter{w: blob}
	if err := l.write(cnt, diff); err != nil {
		return nil, err
	}
	l.digest = hashOf(blob)
	l.diffID = hashOf(diff)
	l.size = cnt.n
	return l, nil
}

// write writes the compressed blob to w and, if tee is not nil, the
// uncompressed tar to tee as well.
func (l *genLayer) write(w io.Writer, tee io.Writer) error {
	cw, err := compressor(w, l.comp)
	if err != nil {
		return err
	}
	var tw io.Writer = cw
	if tee != nil {
		tw = io.MultiWriter(tee, cw)
	}
	if err := l.gen(tw); err != nil {
		return err
	}
	return cw.Close()
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// compressor returns a deterministic compressing writer for c.
func compressor(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case Gzip:
		return kgzip.NewWriterLevel(w, kgzip.BestSpeed)
	case Zstd:
		return zstd.NewWriter(w,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithLowerEncoderMem(true))
	case Uncompressed:
		return nopWriteCloser{w}, nil
	}
	return nil, fmt.Errorf("imagegen: unknown compression %v", c)
}

// stream runs write in a goroutine and returns the read end of a pipe it
// writes to. Closing the reader early stops the writer.
func stream(write func(io.Writer) error) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 64<<10)
		err := write(bw)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// Digest implements v1.Layer.
func (l *genLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID implements v1.Layer.
func (l *genLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// Size implements v1.Layer.
func (l *genLayer) Size() (int64, error) { return l.size, nil }

// MediaType implements v1.Layer.
func (l *genLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

// Compressed implements v1.Layer: the blob, generated on the fly.
func (l *genLayer) Compressed() (io.ReadCloser, error) {
	return stream(func(w io.Writer) error { return l.write(w, nil) }), nil
}

// Uncompressed implements v1.Layer: the tar, generated on the fly.
func (l *genLayer) Uncompressed() (io.ReadCloser, error) {
	return stream(l.gen), nil
}

// withMediaType is a genLayer shown under another media type of the same
// compression (its Docker or OCI twin).
type withMediaType struct {
	*genLayer
	mt types.MediaType
}

func (l withMediaType) MediaType() (types.MediaType, error) { return l.mt, nil }

// flavoured returns l with the media type of its compression in the OCI or
// Docker flavour. Layers not made by this package are returned unchanged.
func flavoured(l v1.Layer, oci bool) v1.Layer {
	var g *genLayer
	switch x := l.(type) {
	case *genLayer:
		g = x
	case withMediaType:
		g = x.genLayer
	default:
		return l
	}
	mt := g.mediaType
	if oci {
		switch g.comp {
		case Gzip:
			mt = types.OCILayer
		case Uncompressed:
			mt = types.OCIUncompressedLayer
		}
	}
	if mt == g.mediaType {
		return g
	}
	return withMediaType{g, mt}
}

// RawLayer wraps blob as a layer with the given media type, as is: blob may be
// truncated or garbage. If diffID is the zero Hash, the layer's DiffID is the
// sha256 of blob. Uncompressed decompresses blob according to mediaType (gzip
// or zstd media types; anything else is returned as is), so a broken blob
// fails there when read.
func RawLayer(blob []byte, mediaType types.MediaType, diffID v1.Hash) v1.Layer {
	digest, _, _ := v1.SHA256(bytes.NewReader(blob))
	if diffID == (v1.Hash{}) {
		diffID = digest
	}
	return &rawLayer{blob: blob, mt: mediaType, digest: digest, diffID: diffID}
}

type rawLayer struct {
	blob           []byte
	mt             types.MediaType
	digest, diffID v1.Hash
}

func (l *rawLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *rawLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *rawLayer) Size() (int64, error)                { return int64(len(l.blob)), nil }
func (l *rawLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *rawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}

func (l *rawLayer) Uncompressed() (io.ReadCloser, error) {
	s := string(l.mt)
	switch {
	case strings.HasSuffix(s, "gzip"):
		zr, err := gzip.NewReader(bytes.NewReader(l.blob))
		if err != nil {
			return nil, err
		}
		return zr, nil
	case strings.HasSuffix(s, "zstd"):
		zr, err := zstd.NewReader(bytes.NewReader(l.blob))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
}

// Program makes n bytes that look like machine code: compressible but not
// repetitive, so an edited copy is a realistic binary patch (the delta
// tests' executables).
func Program(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	ops := []string{"mov", "call", "ret", "push", "pop", "jmp", "cmp", "add", "lea", "xor"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(ops[r.IntN(len(ops))])
		b.WriteByte(byte(r.IntN(256)))
		b.WriteByte(byte(r.IntN(8)))
	}
	return b.Bytes()[:n]
}
