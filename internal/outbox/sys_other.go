//go:build !linux

package outbox

import (
	"os"
	"path/filepath"
)

func fdatasync(f *os.File) error { return f.Sync() }

// lockDir only creates the lock file: exclusive locking is Linux-only.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
}
