package snapshot

import (
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/opencontainers/go-digest"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// TreeDigest summarises an extracted layer tree: a SHA-256 over one record per
// entry, in lexical order: its path, type and mode bits, owner, and for
// regular files the size and CRC-32C of the content, for symlinks the target,
// for devices (overlay whiteouts included) the device number. Times and
// xattrs are left out (directory times change as children are added).
//
// At commit the content checksums come from the extraction (known, by inode),
// so the tree is only stat'ed, not read back; `flick system check` passes nil
// and re-reads every file, so a flipped bit, a truncated or missing file or a
// changed mode shows as a different digest.
func TreeDigest(dir string, known map[uint64]uint32) (digest.Digest, int64, error) {
	h := sha256.New()
	var read int64
	buf := make([]byte, 128<<10)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", p)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%q %o %d %d", rel, st.Mode, st.Uid, st.Gid)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			sum, ok := known[st.Ino]
			if known == nil || !ok {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				c := crc32.New(castagnoli)
				n, err := io.CopyBuffer(c, f, buf)
				f.Close()
				if err != nil {
					return fmt.Errorf("read %s: %w", rel, err)
				}
				read += n
				sum = c.Sum32()
			}
			fmt.Fprintf(h, " %d %08x", st.Size, sum)
		case syscall.S_IFLNK:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, " %q", t)
		case syscall.S_IFCHR, syscall.S_IFBLK:
			fmt.Fprintf(h, " %d", st.Rdev)
		}
		h.Write([]byte{'\n'})
		return nil
	})
	if err != nil {
		return "", read, err
	}
	return digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)), read, nil
}
