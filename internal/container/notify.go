package container

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/bundle"
)

// notifier tells the daemon when a container's bundle changes, so that
// nothing polls: a monitor renames a new state.json in (a start, an exit, a
// restart), the container's log is written (only while somebody follows
// it), a bundle appears or goes. One inotify descriptor for the whole store,
// read by one goroutine through Go's poller, so no thread sits waiting.
//
// It is x/sys inotify rather than fsnotify: fsnotify (v1.10) watches every
// write to every file of a watched directory, and a chatty container's log
// would then wake the daemon at each line whether anybody reads it or not.
// Here a bundle is watched for renames only, and for writes while it has a
// log follower.
//
// Without inotify (the descriptor could not be made, or a watch could not
// be added: fs.inotify.max_user_watches) changed returns nil and callers
// poll as before.
type notifier struct {
	f   *os.File // the inotify descriptor, read through Go's poller; nil without inotify
	dir string   // the store
	log *slog.Logger

	mu      sync.Mutex
	fd      int                      // f's descriptor, for adding watches (f.Fd would make it blocking)
	closed  bool                     // fd is closed (and may be another file's now)
	root    int32                    // the store's watch
	ids     map[int32]string         // bundle watch -> container ID
	wds     map[string]int32         // container ID -> its bundle's watch
	follows map[string]bool          // containers whose log is followed: watched for writes too
	waiters map[string]chan struct{} // closed at the container's next change
	writes  map[string]chan struct{} // closed at the next write to a followed log
	failed  map[string]time.Time     // bundles that could not be watched, and when they were last tried
	dirty   map[string]bool          // changed since Watch last looked
	all     bool                     // events were lost (queue overflow): everything may have changed
	kick    chan struct{}            // Watch's wake-up; holds one
}

const (
	// A bundle: state.json renamed in, the bundle removed.
	bundleMask = unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_ONLYDIR
	// ... and, while its log is followed, writes to it.
	followMask = bundleMask | unix.IN_MODIFY
	// The store: bundles renamed in (create) and out (removal, which first
	// renames a bundle to trash), or deleted.
	rootMask = unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE | unix.IN_ONLYDIR
)

// newNotifier watches the store at root; a notifier without inotify (the
// error is logged) still works, and callers poll.
func newNotifier(root string, log *slog.Logger) *notifier {
	n := &notifier{dir: root, log: log, ids: map[int32]string{}, wds: map[string]int32{}, follows: map[string]bool{},
		waiters: map[string]chan struct{}{}, writes: map[string]chan struct{}{}, failed: map[string]time.Time{}, dirty: map[string]bool{}, kick: make(chan struct{}, 1)}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		log.Warn("no inotify: the daemon polls containers' state", "err", err)
		return n
	}
	wd, err := unix.InotifyAddWatch(fd, root, rootMask)
	if err != nil {
		unix.Close(fd)
		log.Warn("no inotify watch on the container store: the daemon polls containers' state", "err", err)
		return n
	}
	n.root, n.fd = int32(wd), fd
	n.f = os.NewFile(uintptr(fd), "inotify") // non-blocking: reads wait in Go's poller
	go n.read()
	return n
}

// ok reports whether changes are notified.
func (n *notifier) ok() bool { return n.f != nil }

// degraded reports whether some changes go unnoticed: no inotify, a read
// that failed, or bundles that could not be watched. Watch then polls.
func (n *notifier) degraded() bool {
	if n.f == nil {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed || len(n.failed) > 0
}

// retain lets the watches of bundles not in live go: after lost events
// (a queue overflow) their IN_IGNORED may be among them.
func (n *notifier) retain(live map[string]bool) {
	if n.f == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, wd := range n.wds {
		if !live[id] {
			if !n.closed {
				unix.InotifyRmWatch(n.fd, uint32(wd))
			}
			delete(n.wds, id)
			delete(n.ids, wd)
		}
	}
	for id := range n.failed {
		if !live[id] {
			delete(n.failed, id)
		}
	}
}

func (n *notifier) close() {
	if n.f == nil {
		return
	}
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.f.Close() // ends read
}

// changed returns a channel closed at the container's next change; nil if
// changes to it cannot be notified. Call it before looking at the
// container, so that a change in between is not missed.
func (n *notifier) changed(id string) <-chan struct{} { return n.subscribe(n.waiters, id) }

// written returns a channel closed at the next write to the container's
// log, which must be followed (follow); nil if writes cannot be notified.
func (n *notifier) written(id string) <-chan struct{} { return n.subscribe(n.writes, id) }

func (n *notifier) subscribe(waiters map[string]chan struct{}, id string) <-chan struct{} {
	if n.f == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || n.watchLocked(id) != nil {
		return nil
	}
	ch := waiters[id]
	if ch == nil {
		ch = make(chan struct{})
		waiters[id] = ch
	}
	return ch
}

// watch makes sure the container's bundle is watched (create calls it, so
// that its first state change cannot come before the watch).
func (n *notifier) watch(id string) {
	if n.f == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.watchLocked(id)
}

func (n *notifier) watchLocked(id string) error {
	if _, ok := n.wds[id]; ok {
		return nil
	}
	if at, ok := n.failed[id]; ok && time.Since(at) < 10*time.Second {
		return errNotWatched // tried a moment ago; the caller polls
	}
	return n.addLocked(id)
}

var errNotWatched = errors.New("container bundle not watched")

// addLocked adds (or changes) the watch of id's bundle.
func (n *notifier) addLocked(id string) error {
	if n.closed {
		return os.ErrClosed
	}
	mask := uint32(bundleMask)
	if n.follows[id] {
		mask = followMask
	}
	wd, err := unix.InotifyAddWatch(n.fd, filepath.Join(n.dir, id), mask)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			if _, logged := n.failed[id]; !logged {
				n.log.Warn("cannot watch a container's bundle: polling it (raise fs.inotify.max_user_watches?)", "id", id, "err", err)
			}
			n.failed[id] = time.Now()
		}
		return err
	}
	delete(n.failed, id)
	n.ids[int32(wd)], n.wds[id] = id, int32(wd)
	return nil
}

// follow turns the notification of writes to id's log on or off.
func (n *notifier) follow(id string, on bool) {
	if n.f == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if on {
		n.follows[id] = true
	} else {
		delete(n.follows, id)
	}
	if _, ok := n.wds[id]; ok {
		n.addLocked(id) // same inode, same watch: its mask is replaced
	}
}

// takeDirty returns the containers changed since the last call, or all if
// events were lost.
func (n *notifier) takeDirty() (ids []string, all bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id := range n.dirty {
		ids = append(ids, id)
	}
	clear(n.dirty)
	all, n.all = n.all, false
	return ids, all
}

// read turns inotify events into wake-ups until the descriptor is closed.
func (n *notifier) read() {
	buf := make([]byte, 16<<10)
	for {
		k, err := n.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				n.log.Warn("inotify read", "err", err)
			}
			n.mu.Lock()
			n.closed = true // and polled from now on: changed returns nil
			n.wakeAllLocked()
			n.mu.Unlock()
			return
		}
		n.mu.Lock()
		for off := 0; off+unix.SizeofInotifyEvent <= k; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := ""
			if ev.Len > 0 {
				raw := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				for i, b := range raw {
					if b == 0 {
						raw = raw[:i]
						break
					}
				}
				name = string(raw)
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
			n.eventLocked(ev.Wd, ev.Mask, name)
		}
		n.mu.Unlock()
	}
}

func (n *notifier) eventLocked(wd int32, mask uint32, name string) {
	switch {
	case mask&unix.IN_Q_OVERFLOW != 0:
		n.log.Warn("inotify queue overflowed: looking at every container")
		n.wakeAllLocked()
	case wd == n.root:
		if len(name) != 64 { // staging and trash names
			return
		}
		if mask&unix.IN_MOVED_TO != 0 {
			n.watchLocked(name)
		} else {
			delete(n.failed, name) // removed
		}
		n.wakeLocked(name)
	default:
		id, ok := n.ids[wd]
		if !ok {
			return
		}
		if mask&unix.IN_IGNORED != 0 { // the bundle is gone (or the watch was removed)
			delete(n.ids, wd)
			if n.wds[id] == wd {
				delete(n.wds, id)
			}
			n.wakeLocked(id)
			return
		}
		switch {
		case mask&unix.IN_DELETE_SELF != 0 || name == bundle.StateFile:
			n.wakeLocked(id)
		case name == bundle.LogFile:
			wake(n.writes, id)
		}
	}
}

// wakeLocked wakes whoever waits on id, its log's followers too, and Watch.
func (n *notifier) wakeLocked(id string) {
	wake(n.waiters, id)
	wake(n.writes, id)
	n.dirty[id] = true
	n.kickLocked()
}

// wakeAllLocked is wakeLocked for every container: events were lost.
func (n *notifier) wakeAllLocked() {
	for id := range n.waiters {
		wake(n.waiters, id)
	}
	for id := range n.writes {
		wake(n.writes, id)
	}
	n.all = true
	n.kickLocked()
}

func wake(waiters map[string]chan struct{}, id string) {
	if ch := waiters[id]; ch != nil {
		close(ch)
		delete(waiters, id)
	}
}

func (n *notifier) kickLocked() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// processGone returns a channel closed when process pid has ended (a
// pidfd, waited on in Go's poller) and a func that stops waiting. Where
// the kernel has no pidfd (before Linux 5.3) the channel closes after 50
// ms instead, and callers look again: a poll.
func processGone(pid int) (<-chan struct{}, func()) {
	done := make(chan struct{})
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.EINVAL) { // PIDFD_NONBLOCK is Linux 5.10
		if fd, err = unix.PidfdOpen(pid, 0); err == nil {
			if err = unix.SetNonblock(fd, true); err != nil {
				unix.Close(fd)
			}
		}
	}
	if errors.Is(err, unix.ESRCH) {
		close(done)
		return done, func() {}
	}
	var f *os.File
	var rc syscall.RawConn
	if err == nil {
		f = os.NewFile(uintptr(fd), "pidfd")
		if rc, err = f.SyscallConn(); err != nil {
			f.Close()
		}
	}
	if err != nil {
		t := time.AfterFunc(50*time.Millisecond, func() { close(done) })
		return done, func() { t.Stop() }
	}
	go func() {
		// A pidfd polls readable once the process has ended; Read's func
		// returning false waits for that in the poller. Read also returns
		// when the stop func closes f. Only a real end closes done: a
		// descriptor the poller cannot wait on, or the stop, leaves it
		// open (callers' fallbacks look again).
		ended := false
		rc.Read(func(fd uintptr) bool {
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			k, err := unix.Poll(p, 0)
			if err == unix.EINTR || err == unix.EAGAIN {
				return false
			}
			ended = err == nil && k > 0
			return err != nil || ended
		})
		if ended {
			close(done)
		}
	}()
	return done, func() { f.Close() }
}
