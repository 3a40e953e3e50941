// Package outbox is Flick's durable store-and-forward queue for one upstream
// route: messages are appended to segmented, checksummed log files with a
// group-committed fsync before Append returns, handed out in send order
// (highest priority first, FIFO within a priority), and forgotten only once
// the upstream has acknowledged them and the ack is itself durable. Delivery
// is at-least-once; every message carries a stable id for de-duplication.
//
// Layout of a route directory:
//
//	LOCK                     flock: one writer per route
//	00000000000000000001.seg segments, named by their first sequence number
//	acks.log                 acknowledged sequence numbers (compacted)
//
// All priorities share one log; the priority order is an in-memory index
// rebuilt at Open. A segment file is deleted when every record in it is done
// (acked or expired), or, under the drop-oldest policy, when the route is over
// its quota and the segment is the oldest.
package outbox

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flick-edge/flick/internal/durable"
)

// Policy says what Append does when the route's quota is used up.
type Policy string

// The policies.
const (
	// DropOldest deletes the oldest segment (its unacknowledged messages are
	// counted as dropped) until the new messages fit.
	DropOldest Policy = "drop-oldest"
	// Refuse fails Append with ErrFull (counted as refused).
	Refuse Policy = "refuse"
)

// Defaults.
const (
	DefaultMaxBytes     = 64 << 20
	DefaultSegmentSize  = 4 << 20
	DefaultSyncEvery    = 2 * time.Millisecond
	DefaultAckSyncDelay = 20 * time.Millisecond
)

// Errors.
var (
	ErrFull     = errors.New("outbox: quota full")
	ErrClosed   = errors.New("outbox: closed")
	ErrTooLarge = errors.New("outbox: message too large")
	ErrInvalid  = errors.New("outbox: invalid message")
	ErrLocked   = errors.New("outbox: directory in use by another outbox")
)

// Config configures one route's outbox.
type Config struct {
	Dir         string        // one directory per route (created if missing)
	MaxBytes    int64         // disk quota for the segment files (default 64 MiB, at least 16 KiB)
	Policy      Policy        // when full (default DropOldest)
	TTL         time.Duration // default expiry after Created for messages without Expires; 0 = keep until sent
	SegmentSize int64         // default 4 MiB; capped at MaxBytes/4 so that drop-oldest always has a segment to drop
	// SyncEvery bounds the group-commit window: after the first record of a
	// group arrives, the committer waits for more while they keep coming, at
	// most this long, then fsyncs. Append returns only after its record is
	// fsynced. Default 2ms; negative means no lingering at all.
	SyncEvery time.Duration
	// AckSyncDelay is how long an acknowledgement may stay unsynced: Ack
	// writes its record at once and the ack log is fsynced this long after
	// the first unsynced one (Close syncs too). A power cut inside that
	// window only sends those messages again, with their ids (at least
	// once); not waiting for the disk lets the forwarder send the next
	// batch at once. Default 20ms; negative syncs in Ack itself.
	AckSyncDelay time.Duration
}

// Message is one outbox entry.
type Message struct {
	ID       string // stable id; assigned by Append if empty (see FormatID)
	Topic    string
	Payload  []byte
	Priority uint8     // 0-9, higher first; FIFO within a priority
	Created  time.Time // set to now by Append if zero
	Expires  time.Time // zero = never (Append sets Created+TTL if the route has a TTL)
	Attrs    map[string]string
}

// Report tells what Open found on disk.
type Report struct {
	Segments int          // segment files kept
	Records  int          // unacknowledged messages recovered
	Acked    int          // records already acknowledged (skipped)
	Expired  int          // records past their expiry (dropped)
	Removed  int          // segment files deleted because nothing in them was left to send
	Corrupt  []Corruption // torn or corrupt data found and cut off
}

// Corruption is one cut: File was truncated to Offset, losing Bytes bytes
// (Offset 0 with a bad segment header: the file was removed).
type Corruption struct {
	File   string
	Offset int64
	Bytes  int64
	Reason string
}

// Truncated reports whether Open cut anything.
func (r Report) Truncated() bool { return len(r.Corrupt) > 0 }

func (r Report) String() string {
	s := fmt.Sprintf("%d segments, %d messages to send, %d acked, %d expired, %d segments removed",
		r.Segments, r.Records, r.Acked, r.Expired, r.Removed)
	for _, c := range r.Corrupt {
		s += fmt.Sprintf("; %s: %s, truncated at %d (%d bytes)", c.File, c.Reason, c.Offset, c.Bytes)
	}
	return s
}

// Stats is a snapshot of the outbox. Counters count since Open.
type Stats struct {
	Messages  int           // depth: messages not yet acked, expired or dropped
	Bytes     int64         // their encoded size
	DiskBytes int64         // size of the segment files (what MaxBytes bounds)
	Segments  int           // segment files
	OldestAge time.Duration // age (from Created) of the oldest message in the depth
	Appended  uint64        // messages made durable by Append
	Acked     uint64        // messages acknowledged
	Expired   uint64        // messages skipped because they expired
	Dropped   uint64        // messages deleted by the drop-oldest policy
	Refused   uint64        // messages refused with ErrFull
	Corrupt   uint64        // records that failed their checksum when read back (skipped)
	Syncs     uint64        // data fsyncs by the committer (group commits)
	AckSyncs  uint64        // fsyncs of the ack log
}

type state uint8

const (
	stPending state = iota // assigned to a group, not yet durable
	stReady                // durable, to send
	stAcked
	stExpired
	stCorrupt
)

type entry struct {
	seq     uint64
	created int64
	expires int64
	off     uint32
	size    uint32
	prio    uint8
	state   state
}

func (e *entry) live() bool { return e.state == stPending || e.state == stReady }

type segment struct {
	firstSeq uint64
	epoch    uint64
	path     string
	f        *os.File // set by the committer before its first record is published
	size     int64    // bytes assigned, header included
	entries  []entry  // ascending seq
	live     int      // pending or ready entries
	sealed   bool     // no more writes; every record durable
	removed  bool
	custom   map[string][]int32 // custom id -> entry indexes
}

func (s *segment) find(seq uint64) int {
	i := sort.Search(len(s.entries), func(i int) bool { return s.entries[i].seq >= seq })
	if i < len(s.entries) && s.entries[i].seq == seq {
		return i
	}
	return -1
}

type ref struct {
	seg *segment
	i   int32
}

func (r ref) e() *entry { return &r.seg.entries[r.i] }

type chunk struct {
	seg        *segment
	start, end int // in batch.buf
	off        int64
}

// batch is one commit group.
type batch struct {
	buf    []byte
	chunks []chunk
	refs   []ref
	done   chan struct{}
	err    error
}

const (
	maxGroupBytes = 1 << 20   // appenders wait for the committer beyond this
	lingerBytes   = 256 << 10 // stop lingering at this group size
	sweepEvery    = time.Second
	ackCompactMin = 256 << 10
)

// Outbox is one route's durable queue. Its methods are safe for concurrent use.
type Outbox struct {
	cfg     Config
	dir     string
	lock    *os.File
	epoch   uint64
	maxRec  int64
	compact int64 // ack log size that triggers compaction (tests lower it)

	mu                                                  sync.Mutex
	space                                               sync.Cond // a group was taken by the committer, or closed
	segs                                                []*segment
	unlinking                                           []*segment // removed from segs, file not yet deleted
	queues                                              [maxPriority + 1][]ref
	nextSeq                                             uint64
	diskBytes                                           int64
	live                                                int
	liveBytes                                           int64
	cur                                                 *batch
	closed                                              bool
	failed                                              error
	notify                                              chan struct{} // closed when messages become ready
	lastSweep                                           time.Time
	ackLive                                             int // acked entries in kept segments (ack log compaction)
	appended, acked, expired, dropped, refused, corrupt uint64

	pending      atomic.Int64 // records in cur (for lingering)
	pendingBytes atomic.Int64
	syncs        atomic.Uint64
	ackSyncs     atomic.Uint64

	ackMu    sync.Mutex
	ackF     *os.File
	ackSize  int64
	ackDirty bool        // written since the last fsync
	ackTimer *time.Timer // the deferred fsync, armed while dirty
	ackErr   error       // a deferred fsync failed: the next Ack reports it

	kick chan struct{}
	stop chan struct{}
	exit chan struct{}
	cw   *segment // committer's segment being written (committer only)
}

func (c *Config) fill() error {
	if c.Dir == "" {
		return errors.New("outbox: no directory")
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxBytes < 16<<10 {
		return fmt.Errorf("outbox: MaxBytes %d below 16 KiB", c.MaxBytes)
	}
	switch c.Policy {
	case "":
		c.Policy = DropOldest
	case DropOldest, Refuse:
	default:
		return fmt.Errorf("outbox: unknown policy %q (want %q or %q)", c.Policy, DropOldest, Refuse)
	}
	if c.TTL < 0 {
		return errors.New("outbox: negative TTL")
	}
	if c.SegmentSize == 0 {
		c.SegmentSize = DefaultSegmentSize
	}
	c.SegmentSize = min(c.SegmentSize, c.MaxBytes/4, 1<<30)
	if c.SegmentSize < 4<<10 {
		return fmt.Errorf("outbox: SegmentSize %d below 4 KiB", c.SegmentSize)
	}
	if c.SyncEvery == 0 {
		c.SyncEvery = DefaultSyncEvery
	}
	if c.AckSyncDelay == 0 {
		c.AckSyncDelay = DefaultAckSyncDelay
	}
	return nil
}

// Open opens (creating if needed) the outbox in cfg.Dir, recovers it and
// reports what it found: a torn or corrupt tail is cut back to the last record
// whose checksum verifies, and appends continue after it.
func Open(cfg Config) (*Outbox, Report, error) {
	if err := cfg.fill(); err != nil {
		return nil, Report{}, err
	}
	if err := mkdirDurable(cfg.Dir); err != nil {
		return nil, Report{}, err
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, Report{}, err
	}
	o := &Outbox{
		cfg:     cfg,
		dir:     cfg.Dir,
		lock:    lock,
		maxRec:  min(cfg.SegmentSize-segHeaderSize, recHeaderSize+maxBody),
		compact: ackCompactMin,
		notify:  make(chan struct{}),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		exit:    make(chan struct{}),
		cur:     newBatch(),
	}
	o.space.L = &o.mu
	rep, err := o.recover()
	if err != nil {
		o.closeFiles()
		return nil, rep, err
	}
	go o.committer()
	return o, rep, nil
}

func mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := durable.MkdirAll(dir, 0o700); err != nil { // the route directory itself must survive a cut
		return err
	}
	return durable.FsyncDir(filepath.Dir(filepath.Clean(dir)))
}

func newEpoch() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if e := binary.LittleEndian.Uint64(b[:]); e != 0 {
			return e
		}
	}
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

func segName(firstSeq uint64) string { return fmt.Sprintf("%020d.seg", firstSeq) }

// Append makes m durable and returns it with its id, Created and Expires set.
func (o *Outbox) Append(m Message) (Message, error) {
	out, err := o.AppendBatch([]Message{m})
	if err != nil {
		return Message{}, err
	}
	return out[0], nil
}

// AppendBatch appends ms as one group (all or none: under Refuse, ErrFull
// refuses the whole batch) and returns them with ids, Created and Expires set,
// once they are durable.
func (o *Outbox) AppendBatch(ms []Message) ([]Message, error) {
	out, c, err := o.AppendBatchAsync(ms)
	if err != nil {
		return nil, err
	}
	if err := c.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// Commit is the group commit an append joined.
type Commit struct{ b *batch }

// Done is closed once the group is on disk, or has failed.
func (c Commit) Done() <-chan struct{} {
	if c.b == nil {
		return closedChan
	}
	return c.b.done
}

// Wait blocks until the group is on disk and returns the commit's error.
func (c Commit) Wait() error {
	if c.b == nil {
		return nil
	}
	<-c.b.done
	return c.b.err
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// AppendAsync is Append without the wait: it returns as soon as m has joined
// a group commit, with the Commit to wait on. Refusals (ErrFull, ErrInvalid,
// ErrTooLarge, a stopped outbox) are returned at once. A caller that
// acknowledges m to its sender must do so only after Commit.Wait returns
// nil: this lets a connection keep reading while earlier messages sync.
func (o *Outbox) AppendAsync(m Message) (Message, Commit, error) {
	out, c, err := o.AppendBatchAsync([]Message{m})
	if err != nil {
		return Message{}, c, err
	}
	return out[0], c, nil
}

// AppendBatchAsync is AppendBatch without the wait (see AppendAsync).
func (o *Outbox) AppendBatchAsync(ms []Message) ([]Message, Commit, error) {
	if len(ms) == 0 {
		return nil, Commit{}, nil
	}
	now := time.Now()
	out := make([]Message, len(ms))
	sizes := make([]int64, len(ms))
	for i := range ms {
		m := ms[i]
		if m.Created.IsZero() {
			m.Created = now
		}
		if m.Expires.IsZero() && o.cfg.TTL > 0 {
			m.Expires = m.Created.Add(o.cfg.TTL)
		}
		if err := validate(&m); err != nil {
			return nil, Commit{}, err
		}
		sizes[i] = int64(recordSize(&m, m.ID != ""))
		if sizes[i] > o.maxRec {
			return nil, Commit{}, fmt.Errorf("%w: %d bytes encoded, at most %d", ErrTooLarge, sizes[i], o.maxRec)
		}
		out[i] = m
	}

	var gone []*segment
	o.mu.Lock()
	for {
		for o.failed == nil && !o.closed && len(o.cur.buf) >= maxGroupBytes {
			o.space.Wait()
		}
		if o.closed || o.failed != nil {
			err := o.failed
			if o.closed {
				err = ErrClosed
			}
			o.mu.Unlock()
			o.unlink(gone)
			return nil, Commit{}, err
		}
		need := o.spaceNeeded(sizes)
		if o.diskBytes+need <= o.cfg.MaxBytes {
			break
		}
		gone = append(gone, o.makeRoom(need, now)...)
		if o.diskBytes+need <= o.cfg.MaxBytes {
			break
		}
		if o.cfg.Policy == DropOldest && len(o.segs) > 1 && !o.segs[0].sealed {
			// The oldest segment is still being committed: wait for the
			// committer rather than refuse.
			o.space.Wait()
			continue
		}
		o.refused += uint64(len(ms))
		o.mu.Unlock()
		o.unlink(gone)
		return nil, Commit{}, ErrFull
	}
	b := o.cur
	first := len(b.refs) == 0
	for i := range out {
		m := &out[i]
		seq := o.nextSeq
		o.nextSeq++
		custom := m.ID != ""
		if !custom {
			m.ID = FormatID(o.epoch, seq)
		}
		seg := o.segs[len(o.segs)-1]
		if seg.size+sizes[i] > o.cfg.SegmentSize && seg.size > segHeaderSize {
			seg = &segment{firstSeq: seq, epoch: o.epoch, path: filepath.Join(o.dir, segName(seq)), size: segHeaderSize}
			o.segs = append(o.segs, seg)
			o.diskBytes += segHeaderSize
		}
		start := len(b.buf)
		b.buf = appendRecord(b.buf, seq, m, custom)
		if n := len(b.chunks); n > 0 && b.chunks[n-1].seg == seg {
			b.chunks[n-1].end = len(b.buf)
		} else {
			b.chunks = append(b.chunks, chunk{seg: seg, start: start, end: len(b.buf), off: seg.size})
		}
		idx := int32(len(seg.entries))
		seg.entries = append(seg.entries, entry{
			seq: seq, created: m.Created.UnixNano(), off: uint32(seg.size), size: uint32(sizes[i]),
			prio: m.Priority, state: stPending, expires: unixNano(m.Expires),
		})
		if custom {
			if seg.custom == nil {
				seg.custom = make(map[string][]int32)
			}
			seg.custom[m.ID] = append(seg.custom[m.ID], idx)
		}
		b.refs = append(b.refs, ref{seg, idx})
		seg.size += sizes[i]
		seg.live++
		o.diskBytes += sizes[i]
		o.live++
		o.liveBytes += sizes[i]
	}
	o.pending.Add(int64(len(out)))
	o.pendingBytes.Store(int64(len(b.buf)))
	o.mu.Unlock()
	o.unlink(gone)
	if first {
		select {
		case o.kick <- struct{}{}:
		default:
		}
	}
	return out, Commit{b}, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func validate(m *Message) error {
	switch {
	case m.Priority > maxPriority:
		return fmt.Errorf("%w: priority %d above %d", ErrInvalid, m.Priority, maxPriority)
	case len(m.ID) > maxIDLen:
		return fmt.Errorf("%w: id longer than %d bytes", ErrInvalid, maxIDLen)
	case len(m.Topic) > maxTopicLen:
		return fmt.Errorf("%w: topic longer than %d bytes", ErrInvalid, maxTopicLen)
	case len(m.Attrs) > maxAttrs:
		return fmt.Errorf("%w: more than %d attributes", ErrInvalid, maxAttrs)
	case !representable(m.Created) || (!m.Expires.IsZero() && !representable(m.Expires)):
		return fmt.Errorf("%w: time outside 1678-2262", ErrInvalid)
	}
	return nil
}

func representable(t time.Time) bool { return time.Unix(0, t.UnixNano()).Equal(t) }

// spaceNeeded is the disk space sizes take when appended now, segment headers
// of new segments included.
func (o *Outbox) spaceNeeded(sizes []int64) int64 {
	cur := o.segs[len(o.segs)-1].size
	var need int64
	for _, n := range sizes {
		if cur+n > o.cfg.SegmentSize && cur > segHeaderSize {
			need += segHeaderSize
			cur = segHeaderSize
		}
		need += n
		cur += n
	}
	return need
}

// makeRoom frees space for need bytes: first segments whose messages have all
// expired, then, under DropOldest, the oldest sealed segments. It returns the
// segments whose files the caller must delete after unlocking.
func (o *Outbox) makeRoom(need int64, now time.Time) (gone []*segment) {
	if now.Sub(o.lastSweep) >= sweepEvery {
		o.lastSweep = now
		gone = o.sweepExpired(now.UnixNano())
	}
	if o.cfg.Policy != DropOldest {
		return gone
	}
	nowNs := now.UnixNano()
	for o.diskBytes+need > o.cfg.MaxBytes && len(o.segs) > 1 && o.segs[0].sealed {
		s := o.segs[0]
		for i := range s.entries {
			e := &s.entries[i]
			if !e.live() {
				continue
			}
			if e.expires != 0 && e.expires <= nowNs {
				o.expired++
			} else {
				o.dropped++
			}
			o.kill(s, e, stExpired) // dropped and expired alike: gone without an ack
		}
		gone = append(gone, o.removeSeg(s))
	}
	return gone
}

// sweepExpired marks every expired message and returns segments that became empty.
func (o *Outbox) sweepExpired(now int64) (gone []*segment) {
	for _, s := range o.segs {
		for i := range s.entries {
			e := &s.entries[i]
			if e.state == stReady && e.expires != 0 && e.expires <= now {
				o.expired++
				o.kill(s, e, stExpired)
			}
		}
	}
	return o.collectDone()
}

// kill moves a live entry to a final state.
func (o *Outbox) kill(s *segment, e *entry, st state) {
	e.state = st
	s.live--
	o.live--
	o.liveBytes -= int64(e.size)
	if st == stAcked {
		o.ackLive++
	}
}

// collectDone removes sealed segments with nothing live left.
func (o *Outbox) collectDone() (gone []*segment) {
	for i := 0; i < len(o.segs); i++ {
		s := o.segs[i]
		if s.sealed && s.live == 0 {
			gone = append(gone, o.removeSeg(s))
			i--
		}
	}
	return gone
}

// removeSeg takes s out of the index; its file is deleted by unlink.
func (o *Outbox) removeSeg(s *segment) *segment {
	for i, t := range o.segs {
		if t == s {
			o.segs = append(o.segs[:i], o.segs[i+1:]...)
			break
		}
	}
	s.removed = true
	o.diskBytes -= s.size
	for i := range s.entries {
		if s.entries[i].state == stAcked {
			o.ackLive--
		}
	}
	o.unlinking = append(o.unlinking, s)
	return s
}

// unlink deletes the files of removed segments, then syncs the directory.
func (o *Outbox) unlink(segs []*segment) {
	if len(segs) == 0 {
		return
	}
	for _, s := range segs {
		if s.f != nil {
			s.f.Close()
		}
		os.Remove(s.path)
	}
	durable.FsyncDir(o.dir)
	o.mu.Lock()
	for _, s := range segs {
		for i, t := range o.unlinking {
			if t == s {
				o.unlinking = append(o.unlinking[:i], o.unlinking[i+1:]...)
				break
			}
		}
	}
	o.mu.Unlock()
}

// committer writes and fsyncs groups, one at a time: everything appended
// while one fsync runs forms the next group.
func (o *Outbox) committer() {
	defer close(o.exit)
	for {
		select {
		case <-o.kick:
			o.linger()
		case <-o.stop:
		}
		o.mu.Lock()
		b := o.cur
		if len(b.refs) > 0 {
			o.cur = newBatch()
			o.pending.Store(0)
			o.pendingBytes.Store(0)
			o.space.Broadcast()
		}
		closed := o.closed
		o.mu.Unlock()
		if len(b.refs) > 0 {
			o.commit(b)
		}
		if closed {
			// Appends check closed under mu, so b was the last group.
			return
		}
	}
}

// linger lets the group grow while appenders keep arriving, up to SyncEvery.
func (o *Outbox) linger() {
	if o.cfg.SyncEvery <= 0 {
		return
	}
	deadline := time.Now().Add(o.cfg.SyncEvery)
	last := o.pending.Load()
	for {
		runtime.Gosched()
		n := o.pending.Load()
		if n == last || o.pendingBytes.Load() >= lingerBytes || !time.Now().Before(deadline) {
			return
		}
		last = n
	}
}

func (o *Outbox) commit(b *batch) {
	err := o.write(b)
	o.mu.Lock()
	gone := o.publish(b, err)
	o.mu.Unlock()
	o.unlink(gone)
}

// publish makes a written group visible (or failed). Called with mu held.
func (o *Outbox) publish(b *batch, err error) (gone []*segment) {
	if err != nil && o.failed == nil {
		// After a failed fsync the kernel may have dropped the dirty pages:
		// nothing in this process can tell what is on disk any more. Stop
		// accepting; the next Open recovers from what is there.
		o.failed = fmt.Errorf("outbox: commit failed, outbox stopped: %w", err)
	}
	if o.failed != nil {
		b.err = o.failed
		close(b.done)
		o.space.Broadcast()
		return nil
	}
	for _, r := range b.refs {
		e := r.e()
		if e.state == stPending {
			e.state = stReady
			o.queues[e.prio] = append(o.queues[e.prio], r)
		}
	}
	o.appended += uint64(len(b.refs))
	// Everything before the segment being written is complete and synced.
	for i := len(o.segs) - 1; i >= 0; i-- {
		s := o.segs[i]
		if s == o.cw {
			for _, t := range o.segs[:i] {
				t.sealed = true
			}
			break
		}
	}
	gone = o.collectDone()
	close(o.notify)
	o.notify = make(chan struct{})
	close(b.done)
	o.space.Broadcast() // appenders waiting for segments to seal
	return gone
}

func (o *Outbox) write(b *batch) error {
	o.mu.Lock()
	failed := o.failed
	o.mu.Unlock()
	if failed != nil {
		return failed
	}
	for _, c := range b.chunks {
		if c.seg != o.cw {
			if err := fdatasync(o.cw.f); err != nil {
				return err
			}
			o.syncs.Add(1)
			if err := o.createSegmentFile(c.seg); err != nil {
				return err
			}
			o.cw = c.seg
		}
		if _, err := c.seg.f.WriteAt(b.buf[c.start:c.end], c.off); err != nil {
			return err
		}
	}
	if err := fdatasync(o.cw.f); err != nil {
		return err
	}
	o.syncs.Add(1)
	return nil
}

// createSegmentFile creates s's file with its header, atomically and durably
// (temporary name, fsync, rename, fsync of the directory).
func (o *Outbox) createSegmentFile(s *segment) error {
	if err := durable.WriteFile(s.path, segHeader(s.firstSeq, s.epoch), 0o600); err != nil {
		return err
	}
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	s.f = f
	return nil
}

// Next returns up to max messages to send, in send order: highest priority
// first, FIFO within a priority. Expired messages are skipped (and counted).
// Messages stay in the outbox until acked: calling Next again returns them
// again.
func (o *Outbox) Next(max int) []Message {
	if max <= 0 {
		return nil
	}
	type read struct {
		r     ref
		f     *os.File
		off   int64
		size  int
		seq   uint64
		epoch uint64
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	refs, gone := o.collect(max, time.Now().UnixNano())
	reads := make([]read, len(refs))
	for i, r := range refs {
		e := r.e()
		reads[i] = read{r, r.seg.f, int64(e.off), int(e.size), e.seq, r.seg.epoch}
	}
	o.mu.Unlock()
	o.unlink(gone)

	out := make([]Message, 0, len(reads))
	var bad []ref
	// Records sent in a row mostly lie in a row on disk: read each run of
	// them with one pread instead of one per message.
	var span []byte
	var spanF *os.File
	var spanOff int64
	for i, rd := range reads {
		if spanF != rd.f || rd.off < spanOff || rd.off+int64(rd.size) > spanOff+int64(len(span)) {
			end := i + 1
			for end < len(reads) && end-i < 4096 && reads[end].f == rd.f && reads[end].off == reads[end-1].off+int64(reads[end-1].size) {
				end++
			}
			n := reads[end-1].off + int64(reads[end-1].size) - rd.off
			span, spanF, spanOff = make([]byte, n), rd.f, rd.off
			if _, err := rd.f.ReadAt(span, rd.off); err != nil {
				spanF = nil
				continue // segment dropped meanwhile (file closed)
			}
		}
		buf := span[rd.off-spanOff : rd.off-spanOff+int64(rd.size)]
		body, _, reason := unframe(buf, 0)
		var rec record
		var err error
		if reason == "" {
			rec, err = decodeBody(body, true)
		}
		if reason != "" || err != nil || rec.seq != rd.seq {
			bad = append(bad, rd.r)
			continue
		}
		out = append(out, rec.message(rd.epoch))
	}
	if len(bad) > 0 {
		o.mu.Lock()
		for _, r := range bad {
			if e := r.e(); !r.seg.removed && e.state == stReady {
				o.corrupt++
				o.kill(r.seg, e, stCorrupt)
			}
		}
		gone := o.collectDone()
		o.mu.Unlock()
		o.unlink(gone)
	}
	return out
}

// collect finds up to max ready messages in send order, expiring on the way.
func (o *Outbox) collect(max int, now int64) (refs []ref, gone []*segment) {
	for p := maxPriority; p >= 0 && len(refs) < max; p-- {
		q := o.queues[p]
		// Drop finished entries from the head.
		h := 0
		for h < len(q) && (q[h].seg.removed || q[h].e().state != stReady) {
			h++
		}
		if h > 0 {
			clear(q[:h])
			q = q[h:]
			o.queues[p] = q
		}
		skipped := 0
		for _, r := range q {
			if len(refs) == max {
				break
			}
			if r.seg.removed || r.e().state != stReady {
				skipped++
				continue
			}
			if e := r.e(); e.expires != 0 && e.expires <= now {
				o.expired++
				o.kill(r.seg, e, stExpired)
				skipped++
				continue
			}
			refs = append(refs, r)
		}
		if skipped > 1024 && skipped > len(q)/2 {
			// Many acked behind an unacked head: stop scanning them each time.
			kept := q[:0]
			for _, r := range q {
				if !r.seg.removed && r.e().state == stReady {
					kept = append(kept, r)
				}
			}
			clear(q[len(kept):])
			o.queues[p] = kept
		}
	}
	return refs, o.collectDone()
}

// Ack marks messages as delivered. Their records are written at once and
// fsynced within Config.AckSyncDelay (see there); their space is reclaimed
// when whole segments are done. Unknown ids (already acked,
// expired, dropped) are ignored. An id acks every message that carries it.
func (o *Outbox) Ack(ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	var refs []ref
	for _, id := range ids {
		refs = o.resolve(id, refs)
	}
	seqs := make([]uint64, len(refs))
	for i, r := range refs {
		seqs[i] = r.e().seq
	}
	o.mu.Unlock()
	if len(refs) == 0 {
		return nil
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	seqs = dedup(seqs)

	o.ackMu.Lock()
	defer o.ackMu.Unlock()
	if o.ackF == nil {
		return ErrClosed
	}
	rec := appendAckRecord(nil, seqs)
	if err := o.ackErr; err != nil {
		return err
	}
	if _, err := o.ackF.WriteAt(rec, o.ackSize); err != nil {
		return fmt.Errorf("outbox: ack: %w", err)
	}
	o.ackSize += int64(len(rec))
	if o.cfg.AckSyncDelay < 0 {
		if err := o.syncAcksLocked(); err != nil {
			return err
		}
	} else if !o.ackDirty {
		o.ackDirty = true
		if o.ackTimer == nil {
			o.ackTimer = time.AfterFunc(o.cfg.AckSyncDelay, o.syncAcks)
		} else {
			o.ackTimer.Reset(o.cfg.AckSyncDelay)
		}
	}

	o.mu.Lock()
	for _, r := range refs {
		if e := r.e(); !r.seg.removed && e.state == stReady {
			o.acked++
			o.kill(r.seg, e, stAcked)
		}
	}
	gone := o.collectDone()
	compact := o.ackSize > o.compact && o.ackSize > 16*int64(o.ackLive)+4096
	o.mu.Unlock()
	o.unlink(gone)
	if compact {
		if err := o.compactAcks(); err != nil {
			return fmt.Errorf("outbox: compact ack log: %w", err)
		}
	}
	return nil
}

// syncAcks is the deferred fsync of the ack log.
func (o *Outbox) syncAcks() {
	o.ackMu.Lock()
	defer o.ackMu.Unlock()
	if o.ackF != nil && o.ackDirty {
		o.syncAcksLocked()
	}
}

// syncAcksLocked fsyncs the ack log; called with ackMu held.
func (o *Outbox) syncAcksLocked() error {
	o.ackDirty = false
	if err := fdatasync(o.ackF); err != nil {
		// What was written may be lost: those messages will be sent again
		// after a restart, which at-least-once allows; say so once.
		o.ackErr = fmt.Errorf("outbox: ack log sync failed, acknowledgements may not survive a restart: %w", err)
		return o.ackErr
	}
	o.ackSyncs.Add(1)
	return nil
}

func dedup(s []uint64) []uint64 {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// resolve appends the ready entries carrying id.
func (o *Outbox) resolve(id string, refs []ref) []ref {
	for _, s := range o.segs {
		for _, i := range s.custom[id] {
			if s.entries[i].state == stReady {
				refs = append(refs, ref{s, i})
			}
		}
	}
	epoch, seq, ok := ParseID(id)
	if !ok {
		return refs
	}
	k := sort.Search(len(o.segs), func(k int) bool { return o.segs[k].firstSeq > seq }) - 1
	if k < 0 || o.segs[k].epoch != epoch {
		return refs
	}
	s := o.segs[k]
	if i := s.find(seq); i >= 0 && s.entries[i].state == stReady {
		refs = append(refs, ref{s, int32(i)})
	}
	return refs
}

// compactAcks rewrites the ack log with only the acks of kept segments.
// Called with ackMu held.
func (o *Outbox) compactAcks() error {
	o.mu.Lock()
	seqs := o.ackedSeqs()
	o.mu.Unlock()
	return o.rewriteAckLog(seqs)
}

func (o *Outbox) ackedSeqs() []uint64 {
	var seqs []uint64
	for _, list := range [][]*segment{o.segs, o.unlinking} {
		for _, s := range list {
			for i := range s.entries {
				if s.entries[i].state == stAcked {
					seqs = append(seqs, s.entries[i].seq)
				}
			}
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs
}

func (o *Outbox) rewriteAckLog(seqs []uint64) error {
	data := []byte(ackMagic)
	for len(seqs) > 0 {
		n := min(len(seqs), 4096)
		data = appendAckRecord(data, seqs[:n])
		seqs = seqs[n:]
	}
	p := filepath.Join(o.dir, "acks.log")
	if err := durable.WriteFile(p, data, 0o600); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if o.ackF != nil {
		o.ackF.Close()
	}
	o.ackF = f
	o.ackSize = int64(len(data))
	return nil
}

// Wait blocks until there is a message to send (or ctx ends, or the outbox
// is closed: ErrClosed). Messages handed out by Next and not yet acked count.
func (o *Outbox) Wait(ctx context.Context) error {
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return ErrClosed
		}
		refs, gone := o.collect(1, time.Now().UnixNano())
		ch := o.notify
		o.mu.Unlock()
		o.unlink(gone)
		if len(refs) > 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stats returns a snapshot.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := Stats{
		Messages:  o.live,
		Bytes:     o.liveBytes,
		DiskBytes: o.diskBytes,
		Segments:  len(o.segs),
		Appended:  o.appended,
		Acked:     o.acked,
		Expired:   o.expired,
		Dropped:   o.dropped,
		Refused:   o.refused,
		Corrupt:   o.corrupt,
		Syncs:     o.syncs.Load(),
		AckSyncs:  o.ackSyncs.Load(),
	}
	oldest := int64(0)
	found := false
	for _, s := range o.segs {
		if s.live == 0 {
			continue
		}
		for i := range s.entries {
			if e := &s.entries[i]; e.live() && (!found || e.created < oldest) {
				oldest, found = e.created, true
			}
		}
		break // later segments hold later appends; Created may differ but close enough
	}
	if found {
		st.OldestAge = max(0, time.Since(time.Unix(0, oldest)))
	}
	return st
}

// Close commits what was appended, stops the committer and closes the files.
// Appends racing with Close either commit or fail with ErrClosed.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	close(o.notify)
	o.notify = make(chan struct{})
	o.space.Broadcast()
	o.mu.Unlock()
	close(o.stop)
	<-o.exit
	o.ackMu.Lock()
	defer o.ackMu.Unlock()
	if o.ackTimer != nil {
		o.ackTimer.Stop()
	}
	var ackErr error
	if o.ackF != nil && o.ackDirty {
		ackErr = o.syncAcksLocked()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.failed
	if err == nil {
		err = ackErr
	}
	o.closeFiles()
	return err
}

func (o *Outbox) closeFiles() {
	for _, s := range o.segs {
		if s.f != nil {
			s.f.Close()
		}
	}
	if o.ackF != nil {
		o.ackF.Close()
		o.ackF = nil
	}
	if o.lock != nil {
		o.lock.Close()
		o.lock = nil
	}
}
