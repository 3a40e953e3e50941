package outbox

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flick-edge/flick/internal/durable"
)

const maxSegFile = 1 << 31 // entry offsets are uint32

func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, ".seg")
	if !ok || len(digits) != 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

// recover rebuilds the index from the segment files and the ack log. It cuts
// every segment back to its last intact record, drops what has expired,
// deletes segments with nothing left to send, opens (or creates) the segment
// appends go to, and rewrites the ack log compacted.
func (o *Outbox) recover() (Report, error) {
	var rep Report
	ents, err := os.ReadDir(o.dir)
	if err != nil {
		return rep, err
	}
	type file struct {
		name string
		seq  uint64
	}
	var files []file
	dirty := false // directory entries changed: fsync it
	for _, de := range ents {
		name := de.Name()
		if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") {
			// A temporary file of durable.WriteFile (segment or ack log being
			// created) that a crash left behind: never renamed, never used.
			if err := os.Remove(filepath.Join(o.dir, name)); err != nil {
				return rep, err
			}
			dirty = true
			continue
		}
		if seq, ok := parseSegName(name); ok && de.Type().IsRegular() {
			files = append(files, file{name, seq})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].seq < files[j].seq })

	nextSeq := uint64(1)
	bump := func(s uint64) {
		if s > nextSeq {
			nextSeq = s
		}
	}
	for k, fl := range files {
		limit := uint64(math.MaxUint64)
		if k+1 < len(files) {
			limit = files[k+1].seq
		}
		seg, cut, err := loadSegment(filepath.Join(o.dir, fl.name), fl.seq, limit)
		if err != nil {
			return rep, err
		}
		if cut != nil {
			cut.File = fl.name
			rep.Corrupt = append(rep.Corrupt, *cut)
			// Records may have been lost in the cut bytes; their seqs (maybe
			// already handed out as ids) must never be reused.
			last := fl.seq
			if seg != nil && len(seg.entries) > 0 {
				last = seg.entries[len(seg.entries)-1].seq + 1
			}
			bump(sat(last, uint64((cut.Bytes+minRecordSize-1)/minRecordSize)))
		}
		if seg == nil { // bad header: removed
			dirty = true
			continue
		}
		bump(seg.firstSeq)
		if n := len(seg.entries); n > 0 {
			bump(seg.entries[n-1].seq + 1)
		}
		o.segs = append(o.segs, seg)
		o.epoch = seg.epoch
	}

	// Acks.
	ackPath := filepath.Join(o.dir, "acks.log")
	data, err := os.ReadFile(ackPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return rep, err
	}
	if err == nil {
		seqs, good, reason := parseAckLog(data)
		if reason != "" {
			rep.Corrupt = append(rep.Corrupt, Corruption{File: "acks.log", Offset: int64(good), Bytes: int64(len(data) - good), Reason: reason})
		}
		for _, seq := range seqs {
			bump(sat(seq, 1))
			k := sort.Search(len(o.segs), func(k int) bool { return o.segs[k].firstSeq > seq }) - 1
			if k < 0 {
				continue
			}
			s := o.segs[k]
			if i := s.find(seq); i >= 0 && s.entries[i].state == stReady {
				s.entries[i].state = stAcked
				rep.Acked++
			}
		}
	}

	// Expiry and counts.
	now := time.Now().UnixNano()
	for _, s := range o.segs {
		for i := range s.entries {
			e := &s.entries[i]
			if e.state == stReady && e.expires != 0 && e.expires <= now {
				e.state = stExpired
				rep.Expired++
			}
			if e.state == stReady {
				s.live++
			}
		}
	}

	// The segment appends go to: the last one, unless it is full or seqs
	// were lost past its end.
	var active *segment
	if n := len(o.segs); n > 0 {
		last := o.segs[n-1]
		floor := last.firstSeq
		if m := len(last.entries); m > 0 {
			floor = last.entries[m-1].seq + 1
		}
		if nextSeq == floor && last.size < o.cfg.SegmentSize {
			active = last
		}
	}
	if o.epoch == 0 {
		o.epoch = newEpoch()
	}
	var gone []*segment
	kept := o.segs[:0]
	for _, s := range o.segs {
		if s != active {
			s.sealed = true
			if s.live == 0 {
				gone = append(gone, s)
				continue
			}
		}
		kept = append(kept, s)
	}
	o.segs = kept
	for _, s := range gone {
		s.f.Close()
		if err := os.Remove(s.path); err != nil {
			return rep, err
		}
		dirty = true
		rep.Removed++
	}
	if dirty {
		if err := durable.FsyncDir(o.dir); err != nil {
			return rep, err
		}
	}
	if active == nil {
		active = &segment{firstSeq: nextSeq, epoch: o.epoch, path: filepath.Join(o.dir, segName(nextSeq)), size: segHeaderSize}
		if err := o.createSegmentFile(active); err != nil {
			return rep, err
		}
		o.segs = append(o.segs, active)
	}
	o.cw = active
	o.nextSeq = nextSeq

	for _, s := range o.segs {
		o.diskBytes += s.size
		for i := range s.entries {
			e := &s.entries[i]
			switch e.state {
			case stReady:
				o.queues[e.prio] = append(o.queues[e.prio], ref{s, int32(i)})
				o.live++
				o.liveBytes += int64(e.size)
				rep.Records++
			case stAcked:
				o.ackLive++
			}
		}
	}
	rep.Segments = len(o.segs)
	// Segments are deleted above before the ack log forgets their acks.
	if err := o.rewriteAckLog(o.ackedSeqs()); err != nil {
		return rep, err
	}
	return rep, nil
}

// sat is a+b, saturating.
func sat(a, b uint64) uint64 {
	if a+b < a {
		return math.MaxUint64
	}
	return a + b
}

// loadSegment reads one segment file and cuts it back to its last intact
// record (records must verify, decode, and have ascending seqs in
// [nameSeq, limit)). A file whose header is bad is removed: seg is nil.
func loadSegment(path string, nameSeq, limit uint64) (seg *segment, cut *Corruption, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	data, err := io.ReadAll(io.LimitReader(f, maxSegFile))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	first, epoch, herr := parseSegHeader(data)
	if herr == nil && first != nameSeq {
		herr = errors.New("segment header names another sequence number")
	}
	if herr == nil && epoch == 0 {
		herr = errors.New("segment header without epoch")
	}
	if herr != nil {
		if err := os.Remove(path); err != nil {
			return nil, nil, err
		}
		return nil, &Corruption{Offset: 0, Bytes: size, Reason: herr.Error()}, nil
	}
	seg = &segment{firstSeq: first, epoch: epoch, path: path, f: f}
	off := segHeaderSize
	reason := ""
	for off < len(data) {
		body, n, why := unframe(data, off)
		if why != "" {
			reason = why
			break
		}
		rec, err := decodeBody(body, false)
		if err != nil {
			reason = err.Error()
			break
		}
		if rec.seq < first || rec.seq >= limit || (len(seg.entries) > 0 && rec.seq <= seg.entries[len(seg.entries)-1].seq) {
			reason = "record out of sequence"
			break
		}
		idx := int32(len(seg.entries))
		seg.entries = append(seg.entries, entry{
			seq: rec.seq, created: rec.created, expires: rec.expires,
			off: uint32(off), size: uint32(n), prio: rec.prio, state: stReady,
		})
		if rec.customID != "" {
			if seg.custom == nil {
				seg.custom = make(map[string][]int32)
			}
			seg.custom[rec.customID] = append(seg.custom[rec.customID], idx)
		}
		off += n
	}
	if int64(off) < size {
		if reason == "" {
			reason = "segment larger than 2 GiB"
		}
		if err := f.Truncate(int64(off)); err != nil {
			return nil, nil, fmt.Errorf("truncate %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return nil, nil, fmt.Errorf("fsync %s: %w", path, err)
		}
		cut = &Corruption{Offset: int64(off), Bytes: size - int64(off), Reason: reason}
	}
	seg.size = int64(off)
	ok = true
	return seg, cut, nil
}
