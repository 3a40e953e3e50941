//go:build linux

package archive

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// startWriteback starts asynchronous writeback of [off, off+n).
func startWriteback(fd int, off, n int64) error {
	if err := ignoreEINTR(func() error { return unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE) }); err != nil {
		return writeBehindErr("sync_file_range", err)
	}
	return nil
}

// waitAndDrop waits until [off, off+n) is written back and drops it from the
// page cache. Dropping is advisory; its failure is ignored.
func waitAndDrop(fd int, off, n int64) error {
	const flags = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
	if err := ignoreEINTR(func() error { return unix.SyncFileRange(fd, off, n, flags) }); err != nil {
		return writeBehindErr("sync_file_range", err)
	}
	_ = unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
	return nil
}

func writeBehindErr(op string, err error) error {
	switch {
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ESPIPE),
		errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%s: %w (%w)", op, errWriteBehindUnsupported, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func ignoreEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}
