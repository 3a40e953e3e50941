package delta

import (
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

func newTestWriter(w io.Writer) *zstd.Encoder {
	zw, err := zstd.NewWriter(w)
	if err != nil {
		panic(err)
	}
	return zw
}

func mkfifo(p string) error { return unix.Mkfifo(p, 0o644) }

func digestOf(b []byte) digest.Digest { return digest.FromBytes(b) }
