package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func open(t testing.TB, cfg Config) (*Outbox, Report) {
	t.Helper()
	o, rep, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o, rep
}

func mustAppend(t testing.TB, o *Outbox, m Message) Message {
	t.Helper()
	out, err := o.Append(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func ids(ms []Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func topics(ms []Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Topic
	}
	return out
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

func TestAppendNextAckOrder(t *testing.T) {
	o, rep := open(t, Config{Dir: t.TempDir()})
	if rep.Truncated() || rep.Records != 0 || rep.Segments != 1 {
		t.Fatalf("fresh report: %+v", rep)
	}
	// Priorities 0, 5, 9 interleaved: send order is 9s, then 5s, then 0s, FIFO in each.
	prios := []uint8{0, 5, 9, 0, 9, 5, 5, 0, 9}
	var want [10][]string
	seen := map[string]bool{}
	for i, p := range prios {
		m := mustAppend(t, o, Message{Topic: fmt.Sprintf("t%d", i), Payload: []byte{byte(i)}, Priority: p,
			Attrs: map[string]string{"content-type": "application/json", "n": fmt.Sprint(i)}})
		if len(m.ID) != IDLen || seen[m.ID] || m.Created.IsZero() || !m.Expires.IsZero() {
			t.Fatalf("appended %+v", m)
		}
		seen[m.ID] = true
		want[p] = append(want[p], m.Topic)
	}
	order := append(append(append([]string{}, want[9]...), want[5]...), want[0]...)

	got := o.Next(100)
	if fmt.Sprint(topics(got)) != fmt.Sprint(order) {
		t.Fatalf("send order %v, want %v", topics(got), order)
	}
	m := got[0]
	if m.Attrs["content-type"] != "application/json" || m.Attrs["n"] != "2" || !bytes.Equal(m.Payload, []byte{2}) || m.Priority != 9 {
		t.Fatalf("round trip: %+v", m)
	}
	// Next does not remove.
	if again := o.Next(3); fmt.Sprint(ids(again)) != fmt.Sprint(ids(got[:3])) {
		t.Fatalf("Next again: %v", ids(again))
	}
	// Ack out of order: the first 9 and a 0 in the middle.
	if err := o.Ack(got[0].ID, got[7].ID, "no-such-id", got[0].ID); err != nil {
		t.Fatal(err)
	}
	rest := o.Next(100)
	wantRest := append(append([]string{}, order[1:7]...), order[8])
	if fmt.Sprint(topics(rest)) != fmt.Sprint(wantRest) {
		t.Fatalf("after ack %v, want %v", topics(rest), wantRest)
	}
	st := o.Stats()
	if st.Messages != 7 || st.Appended != 9 || st.Acked != 2 || st.Syncs == 0 || st.AckSyncs > 1 || st.OldestAge <= 0 {
		t.Fatalf("stats %+v", st)
	}
	// The ack log is fsynced once, after AckSyncDelay, not in Ack.
	for deadline := time.Now().Add(10 * time.Second); o.Stats().AckSyncs == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the deferred ack-log fsync never ran")
		}
	}
	if st := o.Stats(); st.AckSyncs != 1 {
		t.Fatalf("want one ack-log fsync, got %d", st.AckSyncs)
	}
	if _, err := o.Append(Message{Priority: 10}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("priority 10: %v", err)
	}
	if _, err := o.Append(Message{Payload: make([]byte, DefaultSegmentSize)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge: %v", err)
	}
}

func TestRestartKeepsUnackedForgetsAcked(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxBytes: 1 << 20, SegmentSize: 4 << 10}
	o, _, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Nanosecond)
	var all []Message
	for i := 0; i < 300; i++ {
		m := Message{Topic: fmt.Sprintf("t/%d", i), Payload: bytes.Repeat([]byte{byte(i)}, 100), Priority: uint8(i % 3)}
		if i == 7 {
			m.Expires = exp
			m.ID = "custom-7"
		}
		all = append(all, mustAppend(t, o, m))
	}
	if n := len(segFiles(t, dir)); n < 5 {
		t.Fatalf("%d segments: want rotation", n)
	}
	order := o.Next(1000)
	if len(order) != 300 {
		t.Fatalf("Next: %d", len(order))
	}
	// Ack the first 150 in send order (all of priority 2, then some of 1) plus a few stragglers.
	acked := map[string]bool{}
	var toAck []string
	for i, m := range order {
		if i < 150 || i%17 == 0 || m.ID == "custom-7" {
			toAck = append(toAck, m.ID)
			acked[m.ID] = true
		}
	}
	if err := o.Ack(toAck[:len(toAck)/2]...); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(toAck[len(toAck)/2:]...); err != nil {
		t.Fatal(err)
	}
	var want []Message
	for _, m := range order {
		if !acked[m.ID] {
			want = append(want, m)
		}
	}
	before := o.Next(1000)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	o2, rep := open(t, cfg)
	if rep.Truncated() || rep.Records != len(want) || rep.Acked != len(acked) {
		t.Fatalf("report %v; want %d records, %d acked", rep, len(want), len(acked))
	}
	after := o2.Next(1000)
	if fmt.Sprint(ids(after)) != fmt.Sprint(ids(want)) || fmt.Sprint(ids(before)) != fmt.Sprint(ids(after)) {
		t.Fatalf("after restart:\n%v\nwant\n%v", ids(after), ids(want))
	}
	for i, m := range after {
		w := want[i]
		if m.Topic != w.Topic || !bytes.Equal(m.Payload, w.Payload) || !m.Created.Equal(w.Created) || !m.Expires.Equal(w.Expires) || m.Priority != w.Priority {
			t.Fatalf("message %d changed across restart:\n%+v\n%+v", i, m, w)
		}
	}
	// New appends continue the sequence.
	m := mustAppend(t, o2, Message{Topic: "new"})
	_, s1, _ := ParseID(all[299].ID)
	e2, s2, ok := ParseID(m.ID)
	e1, _, _ := ParseID(all[0].ID)
	if !ok || e1 != e2 || s2 <= s1 {
		t.Fatalf("id after restart %s (%d) not after %s (%d)", m.ID, s2, all[299].ID, s1)
	}
	// Ack everything: every sealed segment goes, the ack log shrinks on reopen.
	if err := o2.Ack(ids(o2.Next(1000))...); err != nil {
		t.Fatal(err)
	}
	if st := o2.Stats(); st.Messages != 0 || st.Segments != 1 {
		t.Fatalf("after acking all: %+v", st)
	}
	o2.Close()
	o3, rep := open(t, cfg)
	if rep.Records != 0 || rep.Truncated() || len(o3.Next(10)) != 0 {
		t.Fatalf("after all acked: %v", rep)
	}
	if n := len(segFiles(t, dir)); n != 1 {
		t.Fatalf("%d segment files left", n)
	}
	if fi, err := os.Stat(filepath.Join(dir, "acks.log")); err != nil || fi.Size() > 64 {
		t.Fatalf("ack log not compacted: %v %v", fi.Size(), err)
	}
}

// appendN writes n records to a fresh outbox, closes it and returns the
// records' offsets in the (single) segment.
func writeRecords(t *testing.T, dir string, n int) (msgs []Message, seg string, offs []int64) {
	t.Helper()
	o, _, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		msgs = append(msgs, mustAppend(t, o, Message{Topic: "sensors/t", Payload: bytes.Repeat([]byte{'a' + byte(i)}, 200),
			Attrs: map[string]string{"i": fmt.Sprint(i)}}))
	}
	o.mu.Lock()
	for _, e := range o.segs[0].entries {
		offs = append(offs, int64(e.off))
	}
	offs = append(offs, o.segs[0].size)
	o.mu.Unlock()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("segments: %v", files)
	}
	return msgs, files[0], offs
}

// TestPowerCut simulates a cut during the write of the last record: the
// segment ends at every byte offset inside it, or has one byte of it flipped,
// or has a zero-filled tail. Open must recover every earlier record, report
// and cut the tail, and take new appends, which survive another restart.
func TestPowerCut(t *testing.T) {
	const n = 4
	base := t.TempDir()
	msgs, seg, offs := writeRecords(t, filepath.Join(base, "orig"), n)
	orig, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	lastStart, end := offs[n-1], offs[n]
	if end != int64(len(orig)) {
		t.Fatalf("segment size %d, index says %d", len(orig), end)
	}

	type damage struct {
		name string
		data []byte
	}
	var cases []damage
	for cut := lastStart + 1; cut < end; cut++ {
		cases = append(cases, damage{fmt.Sprintf("cut@%d", cut), orig[:cut]})
	}
	for i := lastStart; i < end; i++ {
		d := bytes.Clone(orig)
		d[i] ^= 0x40
		cases = append(cases, damage{fmt.Sprintf("flip@%d", i), d})
	}
	cases = append(cases, damage{"zero-tail", append(bytes.Clone(orig[:lastStart]), make([]byte, 4096)...)})

	for k, c := range cases {
		dir := filepath.Join(base, fmt.Sprint(k))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(seg)), c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		o, rep, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(rep.Corrupt) != 1 || rep.Corrupt[0].Offset != lastStart || rep.Corrupt[0].Bytes != int64(len(c.data))-lastStart || rep.Records != n-1 {
			t.Fatalf("%s: report %v", c.name, rep)
		}
		if fi, _ := os.Stat(filepath.Join(dir, filepath.Base(seg))); fi.Size() != lastStart {
			t.Fatalf("%s: segment not truncated: %d", c.name, fi.Size())
		}
		got := o.Next(10)
		if fmt.Sprint(ids(got)) != fmt.Sprint(ids(msgs[:n-1])) {
			t.Fatalf("%s: recovered %v", c.name, ids(got))
		}
		m := mustAppend(t, o, Message{Topic: "after"})
		if m.ID == msgs[n-1].ID {
			t.Fatalf("%s: lost record's id %s reused", c.name, m.ID)
		}
		o.Close()
		o, rep, err = Open(Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		got = o.Next(10)
		if rep.Truncated() || len(got) != n || got[n-1].ID != m.ID || o.Stats().Corrupt != 0 {
			t.Fatalf("%s: second open %v, %v", c.name, rep, ids(got))
		}
		o.Close()
		os.RemoveAll(dir)
	}
}

func TestCorruptAckLogTail(t *testing.T) {
	dir := t.TempDir()
	o, _ := open(t, Config{Dir: dir})
	a := mustAppend(t, o, Message{Topic: "a"})
	b := mustAppend(t, o, Message{Topic: "b"})
	if err := o.Ack(a.ID); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(b.ID); err != nil {
		t.Fatal(err)
	}
	o.Close()
	p := filepath.Join(dir, "acks.log")
	data, _ := os.ReadFile(p)
	os.WriteFile(p, data[:len(data)-2], 0o600) // the ack of b torn
	o, rep := open(t, Config{Dir: dir})
	if len(rep.Corrupt) != 1 || rep.Corrupt[0].File != "acks.log" || rep.Records != 1 {
		t.Fatalf("report %v", rep)
	}
	if got := o.Next(10); len(got) != 1 || got[0].ID != b.ID { // at-least-once: b comes back
		t.Fatalf("got %v", ids(got))
	}
}

func TestQuotaDropOldest(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxBytes: 64 << 10, Policy: DropOldest} // 16 KiB segments
	o, _ := open(t, cfg)
	const n = 2000
	var all []Message
	for i := 0; i < n; i++ {
		all = append(all, mustAppend(t, o, Message{Topic: "q", Payload: make([]byte, 200), Priority: uint8(i % 2)}))
	}
	st := o.Stats()
	if st.Dropped == 0 || st.Refused != 0 || st.DiskBytes > cfg.MaxBytes || uint64(st.Messages) != st.Appended-st.Dropped {
		t.Fatalf("stats %+v", st)
	}
	var disk int64
	for _, f := range segFiles(t, dir) {
		fi, _ := os.Stat(f)
		disk += fi.Size()
	}
	if disk != st.DiskBytes || disk > cfg.MaxBytes {
		t.Fatalf("files hold %d bytes, stats say %d, quota %d", disk, st.DiskBytes, cfg.MaxBytes)
	}
	// What is left is the newest messages: exactly the last Messages appended.
	left := map[string]bool{}
	for _, m := range o.Next(n) {
		left[m.ID] = true
	}
	for i, m := range all {
		if left[m.ID] != (i >= n-st.Messages) {
			t.Fatalf("message %d kept=%v with %d left", i, left[m.ID], st.Messages)
		}
	}
	o.Close()
	o, rep := open(t, cfg)
	if rep.Records != st.Messages {
		t.Fatalf("reopen: %v, want %d", rep, st.Messages)
	}
	// Concurrent appenders against a full quota: never refused, never over it.
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if _, err := o.Append(Message{Payload: make([]byte, 300)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if st := o.Stats(); st.Refused != 0 || st.Dropped == 0 || st.DiskBytes > cfg.MaxBytes || uint64(st.Messages) != uint64(rep.Records)+st.Appended-st.Dropped {
		t.Fatalf("concurrent: %+v", st)
	}
}

func TestQuotaRefuse(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), MaxBytes: 64 << 10, Policy: Refuse}
	o, _ := open(t, cfg)
	accepted := 0
	for {
		_, err := o.Append(Message{Topic: "q", Payload: make([]byte, 200)})
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted++
	}
	if _, err := o.AppendBatch([]Message{{Payload: make([]byte, 200)}, {}}); !errors.Is(err, ErrFull) {
		t.Fatal(err)
	}
	st := o.Stats()
	if st.Refused != 3 || st.Dropped != 0 || st.Messages != accepted || st.DiskBytes > cfg.MaxBytes || accepted < 200 {
		t.Fatalf("accepted %d, stats %+v", accepted, st)
	}
	// Acking frees whole segments: appends are accepted again.
	if err := o.Ack(ids(o.Next(accepted))...); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Append(Message{Payload: make([]byte, 200)}); err != nil {
		t.Fatalf("after acking: %v (%+v)", err, o.Stats())
	}
}

func TestTTL(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, TTL: 150 * time.Millisecond}
	o, _, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	short := mustAppend(t, o, Message{Topic: "short", Priority: 9})
	mustAppend(t, o, Message{Topic: "long", Expires: time.Now().Add(time.Hour)})
	mustAppend(t, o, Message{Topic: "short2"})
	if short.Expires.Sub(short.Created) != cfg.TTL {
		t.Fatalf("expires %v created %v", short.Expires, short.Created)
	}
	if got := topics(o.Next(10)); fmt.Sprint(got) != "[short long short2]" {
		t.Fatalf("before expiry %v", got)
	}
	time.Sleep(200 * time.Millisecond)
	if got := topics(o.Next(10)); fmt.Sprint(got) != "[long]" {
		t.Fatalf("after expiry %v", got)
	}
	if st := o.Stats(); st.Expired != 2 || st.Messages != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Expiry at Open.
	mustAppend(t, o, Message{Topic: "short3"})
	o.Close()
	time.Sleep(200 * time.Millisecond)
	o, rep := open(t, cfg)
	// Expiry is not logged: the two expired before the restart are found again.
	if rep.Expired != 3 || rep.Records != 1 || rep.Acked != 0 {
		t.Fatalf("report %v", rep)
	}
	if got := topics(o.Next(10)); fmt.Sprint(got) != "[long]" {
		t.Fatalf("after reopen %v", got)
	}
}

// TestConcurrentAppenders: many appenders share fsyncs (group commit), every
// message gets a unique id, each appender's messages stay in its order.
func TestConcurrentAppenders(t *testing.T) {
	o, _ := open(t, Config{Dir: t.TempDir(), SegmentSize: 64 << 10})
	const workers, each = 32, 150
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				m := Message{Topic: fmt.Sprint(w), Payload: []byte(fmt.Sprint(i))}
				if i%10 == 0 {
					_, err := o.AppendBatch([]Message{m, m})
					if err != nil {
						errs <- err
						return
					}
					continue
				}
				if _, err := o.Append(m); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { // a concurrent sender
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for acked := 0; acked < workers*each/2; {
			if err := o.Wait(ctx); err != nil {
				errs <- err
				return
			}
			ms := o.Next(50)
			if err := o.Ack(ids(ms)...); err != nil {
				errs <- err
				return
			}
			acked += len(ms)
		}
	}()
	wg.Wait()
	<-done
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := o.Stats()
	total := workers * (each + each/10)
	if int(st.Appended) != total || st.Messages+int(st.Acked) != total {
		t.Fatalf("stats %+v, want %d appended", st, total)
	}
	if st.Syncs*4 > st.Appended {
		t.Fatalf("%d fsyncs for %d records: no group commit", st.Syncs, st.Appended)
	}
	t.Logf("%d records, %d data fsyncs (%.1f records/fsync), %d segments", st.Appended, st.Syncs, float64(st.Appended)/float64(st.Syncs), st.Segments)
	last := map[string]int{}
	for _, m := range o.Next(total) {
		var i int
		fmt.Sscan(string(m.Payload), &i)
		if i < last[m.Topic] {
			t.Fatalf("appender %s: %d after %d", m.Topic, i, last[m.Topic])
		}
		last[m.Topic] = i
	}
}

func TestWaitAndClose(t *testing.T) {
	o, _, err := Open(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := o.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("empty Wait: %v", err)
	}
	woke := make(chan error, 1)
	go func() { woke <- o.Wait(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	mustAppend(t, o, Message{Topic: "x"})
	if err := <-woke; err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(ids(o.Next(1))...); err != nil {
		t.Fatal(err)
	}
	go func() { woke <- o.Wait(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-woke; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close: %v", err)
	}
	if _, err := o.Append(Message{}); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if err := o.Ack("x"); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if o.Next(1) != nil {
		t.Fatal("Next after Close")
	}
}

func TestLockedAndConfig(t *testing.T) {
	dir := t.TempDir()
	open(t, Config{Dir: dir})
	if _, _, err := Open(Config{Dir: dir}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v", err)
	}
	for _, c := range []Config{{}, {Dir: dir, Policy: "lifo"}, {Dir: dir, MaxBytes: 100}, {Dir: dir, TTL: -1}} {
		if _, _, err := Open(c); err == nil {
			t.Fatalf("Open(%+v) accepted", c)
		}
	}
}

func TestCustomIDs(t *testing.T) {
	dir := t.TempDir()
	o, _, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	a := mustAppend(t, o, Message{ID: "upstream-1", Topic: "a"})
	mustAppend(t, o, Message{ID: "upstream-1", Topic: "a-again"})
	c := mustAppend(t, o, Message{Topic: "c"})
	// An id of this outbox's own format carried by another message.
	d := mustAppend(t, o, Message{ID: c.ID, Topic: "d"})
	if a.ID != "upstream-1" || d.ID != c.ID {
		t.Fatalf("ids %q %q", a.ID, d.ID)
	}
	o.Close()
	o, _ = open(t, Config{Dir: dir})
	if got := o.Next(10); fmt.Sprint(ids(got)) != fmt.Sprint([]string{"upstream-1", "upstream-1", c.ID, c.ID}) {
		t.Fatalf("ids after reopen %v", ids(got))
	}
	if err := o.Ack("upstream-1"); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(c.ID); err != nil {
		t.Fatal(err)
	}
	if got := o.Next(10); len(got) != 0 {
		t.Fatalf("left %v", topics(got))
	}
}

func TestAckLogCompaction(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentSize: 8 << 10}
	o, _ := open(t, cfg)
	o.compact = 2 << 10
	var keep []string
	for i := 0; i < 3000; i++ {
		m := mustAppend(t, o, Message{Topic: "c", Payload: make([]byte, 50)})
		if i%1500 == 0 || i == 2999 { // >1024 acked behind an unacked head: the queue is compacted
			keep = append(keep, m.ID) // never acked: pins its segment
			continue
		}
		if err := o.Ack(m.ID); err != nil {
			t.Fatal(err)
		}
	}
	if got := ids(o.Next(100)); fmt.Sprint(got) != fmt.Sprint(keep) {
		t.Fatalf("Next %v, want %v", got, keep)
	}
	o.mu.Lock()
	qlen := len(o.queues[0])
	o.mu.Unlock()
	if qlen > 1100 {
		t.Fatalf("queue holds %d refs for 3 messages", qlen)
	}
	o.ackMu.Lock()
	size := o.ackSize
	o.ackMu.Unlock()
	if size > 16<<10 {
		t.Fatalf("ack log %d bytes after 2997 single acks", size)
	}
	o.Close()
	o, rep := open(t, cfg)
	if got := ids(o.Next(100)); fmt.Sprint(got) != fmt.Sprint(keep) || rep.Truncated() {
		t.Fatalf("after compaction and reopen: %v (%v)", got, rep)
	}
}

func TestIDs(t *testing.T) {
	for _, c := range []struct{ e, s uint64 }{{1, 1}, {^uint64(0), ^uint64(0)}, {0x1234, 99}} {
		id := FormatID(c.e, c.s)
		e, s, ok := ParseID(id)
		if !ok || e != c.e || s != c.s || len(id) != IDLen {
			t.Fatalf("%x/%d -> %s -> %x/%d %v", c.e, c.s, id, e, s, ok)
		}
	}
	if FormatID(5, 9) >= FormatID(5, 10) || FormatID(5, 31) >= FormatID(5, 32) {
		t.Fatal("ids do not sort by seq")
	}
	for _, bad := range []string{"", "x", "G0000000000000000000000000", "0000000000000G000000000000", "0000000000000000000000000U"} {
		if _, _, ok := ParseID(bad); ok {
			t.Fatalf("ParseID(%q) ok", bad)
		}
	}
}

// TestBitRotOnRead: a record damaged after Open is skipped by Next and
// counted; the next Open cuts the segment there.
func TestBitRotOnRead(t *testing.T) {
	dir := t.TempDir()
	o, _ := open(t, Config{Dir: dir})
	var ms []Message
	for i := 0; i < 3; i++ {
		ms = append(ms, mustAppend(t, o, Message{Topic: "r", Payload: []byte("hello world")}))
	}
	o.mu.Lock()
	off := int64(o.segs[0].entries[1].off) + 20
	o.mu.Unlock()
	f, err := os.OpenFile(segFiles(t, dir)[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Flip the byte's bits: writing a fixed 0xff left the record whole
	// when the byte was 0xff already (a timestamp's, now and then).
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{b[0] ^ 0xff}, off)
	f.Close()
	if got := ids(o.Next(10)); fmt.Sprint(got) != fmt.Sprint([]string{ms[0].ID, ms[2].ID}) {
		t.Fatalf("Next %v", got)
	}
	if st := o.Stats(); st.Corrupt != 1 || st.Messages != 2 {
		t.Fatalf("stats %+v", st)
	}
	o.Close()
	o, rep := open(t, Config{Dir: dir})
	if len(rep.Corrupt) != 1 || rep.Records != 1 {
		t.Fatalf("report %v", rep)
	}
	if got := ids(o.Next(10)); fmt.Sprint(got) != fmt.Sprint([]string{ms[0].ID}) {
		t.Fatalf("after reopen %v", got)
	}
}

// TestRefuseReclaimsExpired: under Refuse, a full route whose messages have
// expired takes new ones.
func TestRefuseReclaimsExpired(t *testing.T) {
	o, _ := open(t, Config{Dir: t.TempDir(), MaxBytes: 64 << 10, Policy: Refuse, TTL: 100 * time.Millisecond})
	n := 0
	for ; ; n++ {
		if _, err := o.Append(Message{Payload: make([]byte, 200)}); errors.Is(err, ErrFull) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(sweepEvery + 50*time.Millisecond)
	if _, err := o.Append(Message{Payload: make([]byte, 200)}); err != nil {
		t.Fatalf("after expiry: %v (%+v)", err, o.Stats())
	}
	if st := o.Stats(); st.Expired < uint64(n)/2 || st.Refused != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestCommitFailureStops: after a failed write or fsync the outbox accepts
// nothing more (what is on disk is unknown); reopening recovers.
func TestCommitFailureStops(t *testing.T) {
	dir := t.TempDir()
	o, _, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	a := mustAppend(t, o, Message{Topic: "a"})
	// Swap the active segment's handle for a read-only one: the next write fails.
	ro, err := os.Open(o.cw.path)
	if err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	o.cw.f.Close()
	o.cw.f = ro
	o.mu.Unlock()
	if _, err := o.Append(Message{Topic: "b"}); err == nil {
		t.Fatal("append after failed commit succeeded")
	}
	if _, err := o.Append(Message{Topic: "c"}); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("sticky failure: %v", err)
	}
	if got := ids(o.Next(10)); fmt.Sprint(got) != fmt.Sprint([]string{a.ID}) {
		t.Fatalf("Next %v", got)
	}
	if err := o.Close(); err == nil {
		t.Fatal("Close hid the failure")
	}
	o, rep := open(t, Config{Dir: dir})
	if rep.Records != 1 || rep.Truncated() {
		t.Fatalf("report %v", rep)
	}
	if _, err := o.Append(Message{Topic: "d"}); err != nil {
		t.Fatal(err)
	}
}
