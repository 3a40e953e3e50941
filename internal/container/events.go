package container

import (
	"strconv"
	"sync"
	"time"

	mevents "github.com/moby/moby/api/types/events"
)

// bus fans container events out to `docker events` streams; a slow reader
// loses events rather than slowing containers down.
type bus struct {
	mu   sync.Mutex
	subs map[chan mevents.Message]struct{}
	// last seen start/finish per container, to turn the monitors' state
	// files into start, die and oom events.
	seen map[string][2]time.Time
	// recent keeps the last keptEvents events, for docker events --since
	// (Docker keeps 1,024 in memory too).
	recent []mevents.Message
}

const keptEvents = 1024

// Subscribe returns a channel of events and a cancel function.
func (m *Manager) Subscribe() (<-chan mevents.Message, func()) {
	_, c, cancel := m.SubscribeSince(time.Time{})
	return c, cancel
}

// SubscribeSince is Subscribe, plus the kept events from since on (none
// for a zero since): together, every event once.
func (m *Manager) SubscribeSince(since time.Time) ([]mevents.Message, <-chan mevents.Message, func()) {
	c := make(chan mevents.Message, 256)
	m.events.mu.Lock()
	var past []mevents.Message
	if !since.IsZero() {
		kept := m.events.recent[max(0, len(m.events.recent)-keptEvents):]
		for _, e := range kept {
			if e.TimeNano >= since.UnixNano() {
				past = append(past, e)
			}
		}
	}
	if m.events.subs == nil {
		m.events.subs = map[chan mevents.Message]struct{}{}
	}
	m.events.subs[c] = struct{}{}
	m.events.mu.Unlock()
	var once sync.Once
	return past, c, func() {
		once.Do(func() {
			m.events.mu.Lock()
			delete(m.events.subs, c)
			m.events.mu.Unlock()
		})
	}
}

func (m *Manager) emit(c Container, action mevents.Action, extra map[string]string) {
	now := time.Now()
	attrs := map[string]string{"name": c.Name, "image": c.Image}
	for k, v := range c.Config.Labels {
		attrs[k] = v
	}
	for k, v := range extra {
		attrs[k] = v
	}
	msg := mevents.Message{Type: mevents.ContainerEventType, Action: action, Scope: "local",
		Actor: mevents.Actor{ID: c.ID, Attributes: attrs}, Time: now.Unix(), TimeNano: now.UnixNano()}
	m.events.mu.Lock()
	if len(m.events.recent) == 2*keptEvents {
		// Trimmed a half at a time, not one event (and a 1,023-event
		// copy) per event.
		m.events.recent = append(m.events.recent[:0], m.events.recent[keptEvents:]...)
	}
	m.events.recent = append(m.events.recent, msg)
	for s := range m.events.subs {
		select {
		case s <- msg:
		default:
		}
	}
	m.events.mu.Unlock()
}

// observe turns state changes the monitors recorded into events.
func (m *Manager) observe(all []Container) {
	m.events.mu.Lock()
	if m.events.seen == nil {
		m.events.seen = map[string][2]time.Time{}
	}
	seen := m.events.seen
	m.events.mu.Unlock()
	live := map[string]bool{}
	for _, c := range all {
		live[c.ID] = true
		m.observeSeen(c)
	}
	m.events.mu.Lock()
	for id := range seen {
		if !live[id] {
			delete(seen, id)
		}
	}
	m.events.mu.Unlock()
}

// observeSeen reports c's state changes since it was last seen; the first
// sight of a container only records its state.
func (m *Manager) observeSeen(c Container) {
	m.events.mu.Lock()
	if m.events.seen == nil {
		m.events.seen = map[string][2]time.Time{}
	}
	_, known := m.events.seen[c.ID]
	if !known {
		m.events.seen[c.ID] = [2]time.Time{c.State.StartedAt, c.State.FinishedAt}
	}
	m.events.mu.Unlock()
	if known {
		m.observeOne(c)
	}
}

// unobserve forgets a removed container.
func (m *Manager) unobserve(id string) {
	m.events.mu.Lock()
	delete(m.events.seen, id)
	m.events.mu.Unlock()
}

// expectStart makes the next observation of c report its start (and exit)
// however quickly it happens.
func (m *Manager) expectStart(id string) {
	m.events.mu.Lock()
	if m.events.seen == nil {
		m.events.seen = map[string][2]time.Time{}
	}
	m.events.seen[id] = [2]time.Time{}
	m.events.mu.Unlock()
}

// observeOne reports c's pending state changes now (before it is removed).
func (m *Manager) observeOne(c Container) {
	cur := [2]time.Time{c.State.StartedAt, c.State.FinishedAt}
	// Compared and set at once: two observers of one change (the
	// watcher, a stop) must not both report it.
	m.events.mu.Lock()
	prev, known := m.events.seen[c.ID]
	if known {
		m.events.seen[c.ID] = cur
	}
	m.events.mu.Unlock()
	if !known {
		return
	}
	if !cur[0].IsZero() && !cur[0].Equal(prev[0]) {
		m.emit(c, mevents.ActionStart, nil)
	}
	if !cur[1].IsZero() && !cur[1].Equal(prev[1]) {
		if c.State.OOMKilled {
			m.emit(c, mevents.ActionOOM, nil)
		}
		m.emit(c, mevents.ActionDie, map[string]string{"exitCode": strconv.Itoa(c.State.ExitCode)})
	}
}

// observeNow reports the container's pending state changes (a die, a
// start) before an event that follows them (stop, restart), as Docker
// orders them.
func (m *Manager) observeNow(id string) {
	if c, err := m.load(id); err == nil {
		m.observeOne(c)
	}
}
