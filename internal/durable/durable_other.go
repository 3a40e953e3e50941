//go:build !linux

package durable

import "errors"

func syncfs(dir string) error { return fsyncTree{}.SyncTree(dir) }

// FreeBytes is only implemented on Linux.
func FreeBytes(dir string) (uint64, error) {
	return 0, errors.New("free space: only supported on linux")
}
