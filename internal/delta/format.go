// Package delta computes and applies Flick's image deltas.
//
// A delta rebuilds one target layer's uncompressed tar, byte for byte, from the
// layers a hub already holds. The creator walks the target tar entry by entry:
// every header is sent verbatim (they compress to a few bytes each); a regular
// file's content is sent as a reference when any base layer holds a file with the
// same bytes (whatever its path or layer: moved and renamed files match), as a
// zstd patch that uses the base file at the same path (or with the same name) as
// its dictionary or as a bsdiff-style difference (for executables) when either is
// smaller, and otherwise as literal bytes. The op
// stream is zstd-compressed at the highest level (4 MiB window). Because the result must hash to
// the target's diffID before the hub commits it, a wrong, corrupt or mismatched
// delta can only fail; it can never produce a wrong layer.
//
// Blob layout: the 8-byte magic "FLKDLT1\n", then one zstd stream of ops:
//
//	opHeader  uvarint n, n bytes         tar header blocks of one entry
//	opLiteral uvarint n, n bytes         content or padding bytes
//	opCopy    uvarint layer, string path, uvarint size
//	opPatch   uvarint layer, string path, uvarint size, uvarint n, n bytes (zstd frame, dict = base file)
//	opDiff    uvarint layer, string path, uvarint size, then three zstd streams,
//	          each uvarint n, n bytes: bsdiff control, difference, extra
//	opEnd     32 bytes                   sha256 of the rebuilt tar (the diffID)
//
// A string is uvarint length then bytes; the empty path means "the path of the
// entry whose header came last". layer indexes the delta's base layer list.
package delta

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
)

// Magic starts every delta blob.
const Magic = "FLKDLT1\n"

// MediaType and ArtifactType name delta blobs and delta artifacts in a
// registry.
const (
	MediaType    = "application/vnd.flick.delta.layer.v1"
	ArtifactType = "application/vnd.flick.delta.v1"

	// AnnotationBaseLayers (on the artifact manifest) lists the diffIDs of
	// the base layers the delta reads, comma separated, in the order its ops
	// index them.
	AnnotationBaseLayers = "dev.flick.delta.base.layers"
	// AnnotationBaseImage names the base image (its manifest digest and
	// reference) for humans and for `flick delta ls`.
	AnnotationBaseImage = "dev.flick.delta.base.image"
	// AnnotationTargetDiffID (on each delta layer descriptor) is the diffID of
	// the target layer that blob rebuilds.
	AnnotationTargetDiffID = "dev.flick.delta.target.diffid"
	// AnnotationTargetSize is the full pull's byte count for the layers the
	// delta replaces (compressed sizes from the target manifest).
	AnnotationTargetSize = "dev.flick.delta.target.size"
)

const (
	opEnd byte = iota
	opHeader
	opLiteral
	opCopy
	opPatch
	opDiff
)

// Limits a decoder enforces on untrusted input.
const (
	maxHeader = 2 << 20  // header blocks of one entry
	maxPath   = 16 << 10 // a path in an op
	// MaxPatchBase bounds the base file a patch may use as dictionary: the
	// applier holds it in memory.
	MaxPatchBase = 24 << 20
	// MaxPatchTarget bounds the file a patch rebuilds.
	MaxPatchTarget = 32 << 20
	maxPatchOut    = 1 << 40
	maxLayers      = 1 << 12
)

// ErrCorrupt wraps every decoding failure of a delta blob.
var ErrCorrupt = errors.New("corrupt delta")

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

type opWriter struct {
	w   io.Writer
	buf [binary.MaxVarintLen64]byte
	err error
}

func (o *opWriter) byte(b byte) {
	if o.err == nil {
		_, o.err = o.w.Write([]byte{b})
	}
}

func (o *opWriter) uvarint(v uint64) {
	if o.err == nil {
		n := binary.PutUvarint(o.buf[:], v)
		_, o.err = o.w.Write(o.buf[:n])
	}
}

func (o *opWriter) bytes(b []byte) {
	o.uvarint(uint64(len(b)))
	if o.err == nil {
		_, o.err = o.w.Write(b)
	}
}

type opReader struct {
	r *bufio.Reader
}

func (o *opReader) uvarint(what string, max uint64) (uint64, error) {
	v, err := binary.ReadUvarint(o.r)
	if err != nil {
		return 0, corrupt("reading %s: %v", what, unexpected(err))
	}
	if v > max {
		return 0, corrupt("%s %d is over the limit %d", what, v, max)
	}
	return v, nil
}

func (o *opReader) bytes(what string, max uint64) ([]byte, error) {
	n, err := o.uvarint(what+" length", max)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(o.r, b); err != nil {
		return nil, corrupt("reading %s: %v", what, unexpected(err))
	}
	return b, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// cleanName is where a tar member lands below the layer root.
func cleanName(name string) string {
	c := path.Clean("/" + name)
	return c[1:]
}
