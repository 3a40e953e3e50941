package container

import "sync"

// opLocks serialise what changes a container's life (start, stop,
// removal), as Docker's per-container lock does. A removal that ran while
// a start was launching the container's monitor deleted the bundle under
// it: the app ran on, in its cgroup, with nothing in the daemon to show or
// stop it (found with `flick start ID & flick rm ID`).
type opLocks struct {
	mu sync.Mutex
	by map[string]*opLock
}

type opLock struct {
	mu sync.Mutex
	n  int // holders and waiters
}

// lock takes id's lock and returns its release.
func (o *opLocks) lock(id string) func() {
	o.mu.Lock()
	if o.by == nil {
		o.by = map[string]*opLock{}
	}
	l := o.by[id]
	if l == nil {
		l = &opLock{}
		o.by[id] = l
	}
	l.n++
	o.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		o.mu.Lock()
		if l.n--; l.n == 0 {
			delete(o.by, id)
		}
		o.mu.Unlock()
	}
}
