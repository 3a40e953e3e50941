// Package logfile writes and reads a container's log: Docker's json-file format
// (one JSON object a line: log, stream, time), size-capped and rotated, so
// flash does not wear out and a flooding app cannot fill the disk. The
// container's monitor writes it; the daemon reads it for logs and attach.
package logfile

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// Entry is one line of a container's log, in Docker's json-file format,
// so tools that read Docker's logs read Flick's.
type Entry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// Writer appends entries to path and rotates it past max bytes, keeping
// files copies (path, path.1, ...): flash wears out, and a flooding app
// must not fill the disk.
type Writer struct {
	mu    sync.Mutex
	path  string
	max   int64
	files int
	f     *os.File
	size  int64
}

// Open opens the log at path for appending: max bytes a file (0: 10 MiB),
// files kept (0: 3), as Docker's json-file defaults.
func Open(path string, max int64, files int) (*Writer, error) {
	if max <= 0 {
		max = 10 << 20
	}
	if files < 1 {
		files = 3
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Writer{path: path, max: max, files: files, f: f, size: fi.Size()}, nil
}

// Append adds one entry, rotating first if it would pass the cap.
func (w *Writer) Append(stream string, line []byte) error {
	b, err := json.Marshal(Entry{Log: string(line), Stream: stream, Time: time.Now().UTC()})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.size+int64(len(b)) > w.max && w.size > 0 {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
	return err
}

func (w *Writer) rotate() error {
	w.f.Close()
	for i := w.files - 1; i >= 1; i-- {
		from := w.path
		if i > 1 {
			from = w.path + "." + strconv.Itoa(i-1)
		}
		os.Rename(from, w.path+"."+strconv.Itoa(i))
	}
	if w.files == 1 {
		os.Remove(w.path)
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	w.f, w.size = f, 0
	return nil
}

func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Close()
}

// Pump copies r into the log line by line; a line longer than 16 KiB is
// split, as Docker does.
func (w *Writer) Pump(stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			w.Append(stream, line)
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// Follow says how Read follows a log that is still being written.
type Follow struct {
	On bool // follow at all; without it Read stops at the end
	// Done reports that the writer has ended: Read reads to the end once
	// more and stops.
	Done func() bool
	// Exited returns a channel closed (for good) when the writer reports
	// its end; nil (the func or the channel): no report.
	Exited func() <-chan struct{}
	// Changed and Written return channels closed at the writer's next
	// state change and at the next write to the log. Read subscribes
	// before each read to the end, so a write in between wakes it. A nil
	// channel means no notice: Read then polls the file (every 2 ms while
	// output flows, backing off to 50 ms); with Written it only checks
	// once a second, for a writer that ended without a word.
	Changed, Written func() <-chan struct{}
	// Ended returns a channel closed when the writer ends, where neither
	// Exited nor Changed would tell (nil: no such wait), and a func that
	// lets it go.
	Ended func() (<-chan struct{}, func())
}

// Read sends the entries of the log at path (and its rotated files), oldest first, to fn; when
// following it keeps waiting for new ones until ctx ends or Done reports that
// the container has exited and everything was read.
func Read(ctx context.Context, path string, fw Follow, fn func(Entry) error) error {
	follow, done := fw.On, fw.Done
	sub := func(f func() <-chan struct{}) <-chan struct{} {
		if f == nil {
			return nil
		}
		return f()
	}
	var woke <-chan struct{} // the exit report already seen
	base := path
	var files []string
	for i := 9; i >= 1; i-- {
		if _, err := os.Stat(base + "." + strconv.Itoa(i)); err == nil {
			files = append(files, base+"."+strconv.Itoa(i))
		}
	}
	for _, p := range files {
		if err := readLogFile(p, fn); err != nil {
			return err
		}
	}
	f, err := os.Open(base)
	for err != nil && os.IsNotExist(err) && follow {
		// Not started yet: the monitor creates the log when it starts.
		if done != nil && done() {
			f, err = os.Open(base) // made just before done turned true?
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
		f, err = os.Open(base)
	}
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	defer func() { f.Close() }()
	br := bufio.NewReader(f)
	var pending []byte
	idle := 0
	final := false // done() was true: this read to EOF is the last
	var changed, written, ended <-chan struct{}
	stopEnded := func() {}
	defer func() { stopEnded() }()
	resub := func() {
		changed, written = sub(fw.Changed), sub(fw.Written)
		stopEnded()
		ended, stopEnded = nil, func() {}
		if fw.Ended != nil {
			ended, stopEnded = fw.Ended()
		}
	}
	if follow {
		resub()
	}
	for {
		line, err := br.ReadBytes('\n')
		pending = append(pending, line...)
		if err == nil {
			var e Entry
			if json.Unmarshal(pending, &e) == nil {
				if err := fn(e); err != nil {
					return err
				}
			}
			pending = pending[:0]
			idle = 0
			continue
		}
		if err != io.EOF {
			return err
		}
		if !follow {
			return nil
		}
		// Rotated under us: continue with the new file.
		if st, err1 := os.Stat(base); err1 == nil {
			if cur, err2 := f.Stat(); err2 == nil && !os.SameFile(st, cur) {
				f.Close()
				if f, err = os.Open(base); err != nil {
					return err
				}
				br.Reset(f)
				continue
			}
		}
		// The monitor has written everything before it reports the exit
		// and ends: at EOF after that, the log is complete. The EOF just
		// seen may be older than done's answer, so read to EOF once more.
		if final {
			return nil
		}
		if done != nil && done() {
			final = true
			continue
		}
		// Without notice of writes, poll fast while output flows or the
		// container just started, backing off to 50 ms when idle.
		idle++
		wait := min(time.Duration(idle)*2*time.Millisecond, 50*time.Millisecond)
		if written != nil {
			wait = time.Second
		}
		ch := sub(fw.Exited)
		if ch == woke {
			ch = nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-ch:
			woke = ch // read to EOF once more, then done() says so
		case <-changed:
		case <-written:
		case <-ended:
		case <-t.C:
		}
		t.Stop()
		// Subscribe again before reading on; a channel not fired yet is
		// returned again.
		resub()
	}
}

func readLogFile(p string, fn func(Entry) error) error {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Entry
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	return nil
}
