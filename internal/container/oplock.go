package container

import (
	"context"
	"sync"
)

// opLocks serialise what changes a container's life (start, stop, kill,
// removal), as Docker's per-container lock does. A removal that ran while
// a start was launching the container's monitor deleted the bundle under
// it: the app ran on, in its cgroup, with nothing in the daemon to show or
// stop it (found with `flick start ID & flick rm ID`).
type opLocks struct {
	mu sync.Mutex
	by map[string]*opLock
}

type opLock struct {
	held chan struct{} // holds a token while somebody has the lock
	n    int           // holders and waiters
}

// lock takes id's lock, or gives up when ctx ends (a client gone does not
// leave a request queued behind a long start), and returns its release;
// calling the release more than once is harmless.
func (o *opLocks) lock(ctx context.Context, id string) (func(), error) {
	o.mu.Lock()
	if o.by == nil {
		o.by = map[string]*opLock{}
	}
	l := o.by[id]
	if l == nil {
		l = &opLock{held: make(chan struct{}, 1)}
		o.by[id] = l
	}
	l.n++
	o.mu.Unlock()
	done := func() {
		o.mu.Lock()
		if l.n--; l.n == 0 {
			delete(o.by, id)
		}
		o.mu.Unlock()
	}
	select {
	case l.held <- struct{}{}:
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-l.held
			done()
		})
	}, nil
}
