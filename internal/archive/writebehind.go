package archive

import (
	"errors"
	"os"
)

// errWriteBehindUnsupported is returned by the platform hooks when the file
// or platform cannot do ranged writeback; write-behind is then switched off
// for that file.
var errWriteBehindUnsupported = errors.New("write-behind not supported")

// writeBehind wraps a freshly created regular file and keeps the page cache
// it dirties bounded (see Options.WriteBehind). It is not safe for
// concurrent use.
type writeBehind struct {
	f     *os.File
	fd    int
	chunk int64 // <= 0: disabled

	off       int64 // bytes written so far
	submitted int64 // end of the last range whose writeback was started
	prevStart int64 // range started but not yet waited for and dropped
	prevEnd   int64
	crossed   bool // at least one chunk boundary was crossed
	disabled  bool

	// start and drop are the platform hooks (startWriteback and
	// waitAndDrop); tests replace them to observe the ranges.
	start func(fd int, off, n int64) error
	drop  func(fd int, off, n int64) error
}

func newWriteBehind(f *os.File, chunk int64) *writeBehind {
	return &writeBehind{
		f: f, fd: int(f.Fd()), chunk: chunk,
		start: startWriteback, drop: waitAndDrop,
	}
}

// Write writes p to the file and, every chunk bytes, starts writeback of the
// new range and waits for and drops the previous one.
func (w *writeBehind) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if err != nil {
		return n, err
	}
	if w.chunk > 0 && !w.disabled && w.off-w.submitted >= w.chunk {
		w.crossed = true
		if err := w.cycle(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// cycle starts writeback of [submitted, off) and retires the previous range.
func (w *writeBehind) cycle() error {
	start, end := w.submitted, w.off
	if end > start {
		if err := w.start(w.fd, start, end-start); err != nil {
			return w.fail(err)
		}
	}
	if err := w.retire(); err != nil {
		return err
	}
	w.prevStart, w.prevEnd = start, end
	w.submitted = end
	return nil
}

// retire waits for the previous range's writeback and drops its pages.
func (w *writeBehind) retire() error {
	if w.prevEnd > w.prevStart {
		if err := w.drop(w.fd, w.prevStart, w.prevEnd-w.prevStart); err != nil {
			return w.fail(err)
		}
	}
	w.prevStart, w.prevEnd = 0, 0
	return nil
}

// finish handles the tail of the file: if the file crossed at least one
// chunk boundary, the rest is written back and every outstanding range is
// waited for and dropped. Files that never filled a chunk are left alone.
func (w *writeBehind) finish() error {
	if w.chunk <= 0 || w.disabled || !w.crossed {
		return nil
	}
	if err := w.cycle(); err != nil {
		return err
	}
	if w.disabled {
		return nil
	}
	return w.retire()
}

func (w *writeBehind) fail(err error) error {
	if errors.Is(err, errWriteBehindUnsupported) {
		w.disabled = true
		return nil
	}
	return err
}
