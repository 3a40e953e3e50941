package outbox

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/bits"
	"sort"
	"time"
)

// On-disk format. Everything is little-endian.
//
// A segment file is named %020d.seg after the sequence number of its first
// record and starts with a 32-byte header:
//
//	magic "FLKOBX01" | first seq u64 | epoch u64 | reserved u32 | crc32c(bytes 0..28) u32
//
// followed by records:
//
//	body length u32 | crc32c(length bytes, body) u32 | body
//
// and a body is
//
//	seq u64 | created unix ns i64 | expires unix ns i64 (0: never) | priority u8 | flags u8 |
//	[flags&flagCustomID: uvarint len, id] | uvarint len, topic |
//	uvarint n, n x (uvarint len, key, uvarint len, value) | payload (the rest)
//
// The ack log acks.log is the 8-byte magic "FLKACK01" followed by records of
// the same framing whose body is uvarint n, uvarint first seq, then n-1 uvarint
// deltas between ascending seqs.
const (
	segMagic      = "FLKOBX01"
	ackMagic      = "FLKACK01"
	segHeaderSize = 32
	recHeaderSize = 8
	minBody       = 8 + 8 + 8 + 1 + 1 + 1 + 1 // seq, created, expires, prio, flags, empty topic, no attrs
	minRecordSize = recHeaderSize + minBody
	maxBody       = 16 << 20
	maxIDLen      = 1024
	maxTopicLen   = 64 << 10
	maxAttrs      = 256
	maxPriority   = 9

	flagCustomID = 1 << 0
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func segHeader(firstSeq, epoch uint64) []byte {
	b := make([]byte, segHeaderSize)
	copy(b, segMagic)
	binary.LittleEndian.PutUint64(b[8:], firstSeq)
	binary.LittleEndian.PutUint64(b[16:], epoch)
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	return b
}

func parseSegHeader(b []byte) (firstSeq, epoch uint64, err error) {
	if len(b) < segHeaderSize {
		return 0, 0, errors.New("short segment header")
	}
	if string(b[:8]) != segMagic {
		return 0, 0, errors.New("bad segment magic")
	}
	if crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:]) {
		return 0, 0, errors.New("segment header checksum mismatch")
	}
	return binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:]), nil
}

// frame finishes the record whose 8-byte header starts at dst[start:].
func frame(dst []byte, start int) []byte {
	body := len(dst) - start - recHeaderSize
	binary.LittleEndian.PutUint32(dst[start:], uint32(body))
	c := crc32.Update(0, castagnoli, dst[start:start+4])
	c = crc32.Update(c, castagnoli, dst[start+recHeaderSize:])
	binary.LittleEndian.PutUint32(dst[start+4:], c)
	return dst
}

// unframe reads the record at b[off:]. It returns the body and the record's
// full size, or a reason why the bytes there are not a whole, intact record.
func unframe(b []byte, off int) (body []byte, size int, reason string) {
	rest := len(b) - off
	if rest < recHeaderSize {
		return nil, 0, "torn record header"
	}
	n := int(binary.LittleEndian.Uint32(b[off:]))
	if n < minBody || n > maxBody {
		if n == 0 && allZero(b[off:]) {
			return nil, 0, "zero-filled tail"
		}
		return nil, 0, "bad record length"
	}
	if n > rest-recHeaderSize {
		return nil, 0, "torn record"
	}
	body = b[off+recHeaderSize : off+recHeaderSize+n]
	c := crc32.Update(0, castagnoli, b[off:off+4])
	c = crc32.Update(c, castagnoli, body)
	if c != binary.LittleEndian.Uint32(b[off+4:]) {
		return nil, 0, "record checksum mismatch"
	}
	return body, recHeaderSize + n, ""
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// recordSize is the encoded size of m's record (custom: m.ID is stored).
func recordSize(m *Message, custom bool) int {
	n := recHeaderSize + 8 + 8 + 8 + 1 + 1
	if custom {
		n += uvarintLen(uint64(len(m.ID))) + len(m.ID)
	}
	n += uvarintLen(uint64(len(m.Topic))) + len(m.Topic)
	n += uvarintLen(uint64(len(m.Attrs)))
	for k, v := range m.Attrs {
		n += uvarintLen(uint64(len(k))) + len(k) + uvarintLen(uint64(len(v))) + len(v)
	}
	return n + len(m.Payload)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendRecord encodes m as record seq onto dst.
func appendRecord(dst []byte, seq uint64, m *Message, custom bool) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.Created.UnixNano()))
	var exp int64
	if !m.Expires.IsZero() {
		exp = m.Expires.UnixNano()
	}
	dst = binary.LittleEndian.AppendUint64(dst, uint64(exp))
	var flags byte
	if custom {
		flags |= flagCustomID
	}
	dst = append(dst, m.Priority, flags)
	if custom {
		dst = appendString(dst, m.ID)
	}
	dst = appendString(dst, m.Topic)
	dst = binary.AppendUvarint(dst, uint64(len(m.Attrs)))
	if len(m.Attrs) > 0 {
		keys := make([]string, 0, len(m.Attrs))
		for k := range m.Attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			dst = appendString(dst, k)
			dst = appendString(dst, m.Attrs[k])
		}
	}
	dst = append(dst, m.Payload...)
	return frame(dst, start)
}

// record is a decoded body. Without full decoding, only the fixed fields and
// the custom id are filled in (the rest is still validated); with it, payload
// aliases the body.
type record struct {
	seq      uint64
	created  int64
	expires  int64
	prio     uint8
	customID string
	topic    string
	attrs    map[string]string
	payload  []byte
}

type reader struct {
	b   []byte
	bad bool
}

func (r *reader) str(max int, keep bool) string {
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(max) || n > uint64(len(r.b)-k) {
		r.bad = true
		return ""
	}
	s := r.b[k : k+int(n)]
	r.b = r.b[k+int(n):]
	if keep {
		return string(s)
	}
	return ""
}

func decodeBody(b []byte, full bool) (record, error) {
	var rec record
	if len(b) < minBody {
		return rec, errors.New("short record body")
	}
	rec.seq = binary.LittleEndian.Uint64(b)
	rec.created = int64(binary.LittleEndian.Uint64(b[8:]))
	rec.expires = int64(binary.LittleEndian.Uint64(b[16:]))
	rec.prio = b[24]
	flags := b[25]
	if rec.prio > maxPriority {
		return rec, errors.New("bad priority")
	}
	if flags&^flagCustomID != 0 {
		return rec, errors.New("unknown record flags")
	}
	r := reader{b: b[26:]}
	if flags&flagCustomID != 0 {
		rec.customID = r.str(maxIDLen, true)
		if !r.bad && rec.customID == "" {
			return rec, errors.New("empty custom id")
		}
	}
	rec.topic = r.str(maxTopicLen, full)
	n, k := binary.Uvarint(r.b)
	if r.bad || k <= 0 || n > maxAttrs || n > uint64(len(r.b)-k)/2 {
		return rec, errors.New("malformed record body")
	}
	r.b = r.b[k:]
	if full && n > 0 {
		rec.attrs = make(map[string]string, n)
	}
	for i := uint64(0); i < n; i++ {
		key := r.str(maxBody, full)
		val := r.str(maxBody, full)
		if full {
			rec.attrs[key] = val
		}
	}
	if r.bad {
		return rec, errors.New("malformed record attributes")
	}
	if full {
		rec.payload = r.b // b is the caller's own copy
	}
	return rec, nil
}

func (rec *record) message(epoch uint64) Message {
	m := Message{
		ID:       rec.customID,
		Topic:    rec.topic,
		Payload:  rec.payload,
		Priority: rec.prio,
		Created:  time.Unix(0, rec.created),
		Attrs:    rec.attrs,
	}
	if m.ID == "" {
		m.ID = FormatID(epoch, rec.seq)
	}
	if rec.expires != 0 {
		m.Expires = time.Unix(0, rec.expires)
	}
	return m
}

// Ack log records.

func appendAckRecord(dst []byte, seqs []uint64) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = binary.AppendUvarint(dst, uint64(len(seqs)))
	var prev uint64
	for i, s := range seqs {
		if i == 0 {
			dst = binary.AppendUvarint(dst, s)
		} else {
			dst = binary.AppendUvarint(dst, s-prev)
		}
		prev = s
	}
	return frame(dst, start)
}

// parseAckLog returns the acked seqs in data and the length of its intact
// prefix (data[good:] is a torn or corrupt tail).
func parseAckLog(data []byte) (seqs []uint64, good int, reason string) {
	if len(data) < len(ackMagic) || string(data[:len(ackMagic)]) != ackMagic {
		return nil, 0, "bad ack log header"
	}
	off := len(ackMagic)
	for off < len(data) {
		if len(data)-off < recHeaderSize {
			return seqs, off, "torn ack record"
		}
		n := int(binary.LittleEndian.Uint32(data[off:]))
		if n < 2 || n > maxBody || n > len(data)-off-recHeaderSize {
			return seqs, off, "bad or torn ack record"
		}
		body := data[off+recHeaderSize : off+recHeaderSize+n]
		c := crc32.Update(0, castagnoli, data[off:off+4])
		c = crc32.Update(c, castagnoli, body)
		if c != binary.LittleEndian.Uint32(data[off+4:]) {
			return seqs, off, "ack record checksum mismatch"
		}
		cnt, k := binary.Uvarint(body)
		if k <= 0 || cnt == 0 || cnt > uint64(len(body)) {
			return seqs, off, "malformed ack record"
		}
		body = body[k:]
		var prev uint64
		for i := uint64(0); i < cnt; i++ {
			v, k := binary.Uvarint(body)
			if k <= 0 {
				return seqs, off, "malformed ack record"
			}
			body = body[k:]
			if i > 0 {
				v += prev
			}
			seqs = append(seqs, v)
			prev = v
		}
		off += recHeaderSize + n
	}
	return seqs, off, ""
}

// Message ids.

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var crockfordIndex = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(crockford); i++ {
		t[crockford[i]] = int8(i)
		t[crockford[i]|0x20] = int8(i) // lower case too
	}
	return t
}()

// IDLen is the length of an id assigned by Append.
const IDLen = 26

// FormatID is the id Append gives record seq of an outbox whose epoch (a
// random number drawn when its directory was created) is epoch: 13 Crockford
// base32 digits of each, so ids of one route sort in append order and ids of
// different routes or hubs do not collide.
func FormatID(epoch, seq uint64) string {
	var b [IDLen]byte
	put := func(dst []byte, v uint64) {
		for i := 12; i >= 0; i-- {
			dst[i] = crockford[v&31]
			v >>= 5
		}
	}
	put(b[:13], epoch)
	put(b[13:], seq)
	return string(b[:])
}

// ParseID reverses FormatID.
func ParseID(id string) (epoch, seq uint64, ok bool) {
	// 64 bits in 13 digits: the first digit of each half holds 4 bits.
	if len(id) != IDLen || crockfordIndex[id[0]] > 15 || crockfordIndex[id[13]] > 15 {
		return 0, 0, false
	}
	get := func(s string) (uint64, bool) {
		var v uint64
		for i := 0; i < len(s); i++ {
			d := crockfordIndex[s[i]]
			if d < 0 {
				return 0, false
			}
			v = v<<5 | uint64(d)
		}
		return v, true
	}
	e, ok1 := get(id[:13])
	s, ok2 := get(id[13:])
	return e, s, ok1 && ok2
}
