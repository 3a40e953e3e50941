//go:build !linux

package archive

// startWriteback is a no-op where sync_file_range does not exist.
func startWriteback(fd int, off, n int64) error { return errWriteBehindUnsupported }

// waitAndDrop is a no-op where sync_file_range does not exist.
func waitAndDrop(fd int, off, n int64) error { return errWriteBehindUnsupported }
