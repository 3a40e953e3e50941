package reflex

import "sync"

// queue is a function's bounded event queue. When it is full, push either
// refuses (reject) or evicts the oldest event (drop-oldest); the caller
// learns which so every decision is counted and answered.
type queue struct {
	mu     sync.Mutex
	cond   sync.Cond
	ring   []*job
	head   int
	n      int
	closed bool
}

func newQueue(size int) *queue {
	q := &queue{ring: make([]*job, size)}
	q.cond.L = &q.mu
	return q
}

// push adds j. With dropOldest, a full queue evicts and returns its oldest
// job; otherwise a full queue returns ok=false.
func (q *queue) push(j *job, dropOldest bool) (evicted *job, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, false
	}
	if q.n == len(q.ring) {
		if !dropOldest {
			return nil, false
		}
		evicted = q.ring[q.head]
		q.ring[q.head] = nil
		q.head = (q.head + 1) % len(q.ring)
		q.n--
	}
	q.ring[(q.head+q.n)%len(q.ring)] = j
	q.n++
	q.cond.Signal()
	return evicted, true
}

// pop waits for a job; ok is false once the queue is closed and drained.
func (q *queue) pop() (*job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.n == 0 {
		return nil, false
	}
	j := q.ring[q.head]
	q.ring[q.head] = nil
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	return j, true
}

// close stops accepting; queued jobs are still handed out.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
