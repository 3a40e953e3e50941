package delta

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
)

const block = 512

// entry is one member of a tar stream as raw bytes: every header block that
// belongs to it (PAX and GNU long-name records included) and the size of the
// content that follows. The splitter never re-encodes anything, so writing
// Header, the content and Pad back reproduces the stream byte for byte.
type entry struct {
	Header   []byte
	Name     string // cleaned path, as the layer holds it on disk
	Typeflag byte
	Size     int64 // content bytes after Header
	Pad      int64 // padding bytes after the content
}

// regular reports whether the content is a regular file's data (the only
// content a delta copies or patches).
func (e *entry) regular() bool {
	// The NUL type flag is what very old tars write for regular files.
	return e.Typeflag == tar.TypeReg || e.Typeflag == 0 || e.Typeflag == tar.TypeCont
}

// splitter walks a tar stream, handing out raw header bytes and leaving the
// content to the caller. After the end-of-archive marker (or anything it does
// not understand) it reports errTail: the rest of the stream is opaque bytes.
type splitter struct {
	r   io.Reader
	blk [block]byte
}

var errTail = errors.New("tail")

// next reads the header blocks of the next entry. On errTail the bytes read so
// far (the first unrecognised or zero block) are returned in e.Header and the
// caller copies the remainder of the stream verbatim.
func (s *splitter) next() (entry, error) {
	var hdr []byte
	for {
		if n, err := io.ReadFull(s.r, s.blk[:]); err != nil {
			if err == io.EOF && len(hdr) == 0 {
				return entry{}, io.EOF
			}
			// A truncated header: hand back what we have as tail bytes.
			hdr = append(hdr, s.blk[:n]...)
			return entry{Header: hdr}, fmt.Errorf("%w: truncated tar header", errTail)
		}
		hdr = append(hdr, s.blk[:]...)
		if isZero(s.blk[:]) {
			return entry{Header: hdr}, errTail
		}
		size, ok := parseSize(s.blk[124:136])
		if !ok || size < 0 {
			return entry{Header: hdr}, errTail
		}
		tf := s.blk[156]
		switch tf {
		case tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			if size > 1<<20 {
				return entry{Header: hdr}, errTail
			}
			n := (size + block - 1) / block * block
			start := len(hdr)
			hdr = append(hdr, make([]byte, n)...)
			if n, err := io.ReadFull(s.r, hdr[start:]); err != nil {
				return entry{Header: hdr[:start+n]}, fmt.Errorf("%w: truncated tar record", errTail)
			}
			continue
		case tar.TypeXGlobalHeader, tar.TypeGNUSparse:
			return entry{Header: hdr}, errTail
		}
		// Let archive/tar interpret the header blocks (PAX paths and sizes, GNU
		// long names, base-256 numbers); it reads nothing past them.
		h, err := tar.NewReader(bytes.NewReader(hdr)).Next()
		if err != nil {
			return entry{Header: hdr}, errTail
		}
		e := entry{Header: hdr, Name: cleanName(h.Name), Typeflag: h.Typeflag, Size: h.Size}
		if h.Size < 0 {
			return entry{Header: hdr}, errTail
		}
		// Entries without stored data declare a size that is not in the stream.
		switch h.Typeflag {
		case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
			e.Size = 0
		}
		e.Pad = (block - e.Size%block) % block
		return e, nil
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// parseSize reads a tar numeric field: octal, or GNU base-256.
func parseSize(f []byte) (int64, bool) {
	if len(f) > 0 && f[0]&0x80 != 0 {
		if f[0] != 0x80 {
			return 0, false
		}
		var v int64
		for _, c := range f[1:] {
			if v > (1<<55)-1 {
				return 0, false
			}
			v = v<<8 | int64(c)
		}
		return v, true
	}
	f = bytes.Trim(f, " \x00")
	var v int64
	for _, c := range f {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v<<3 | int64(c-'0')
		if v > 1<<40 {
			return 0, false
		}
	}
	return v, true
}
