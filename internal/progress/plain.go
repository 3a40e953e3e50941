package progress

import (
	"fmt"
	"io"

	"github.com/docker/go-units"
)

// plainSink prints lines for logs and pipes: each status change once per
// ID, progress at most once per 10% per status.
type plainSink struct {
	w      io.Writer
	layers map[string]*plainLayer
}

type plainLayer struct {
	status string
	decile int // last progress decile printed for status; -1 none
}

func (s *plainSink) message(m *message, _ []byte) {
	if m.Stream != "" {
		_, _ = io.WriteString(s.w, m.Stream)
	}
	if m.ID == "" {
		if m.Status != "" {
			_, _ = fmt.Fprintln(s.w, m.Status)
		}
		return
	}
	l := s.layers[m.ID]
	if l == nil {
		l = &plainLayer{decile: -1}
		s.layers[m.ID] = l
	}
	changed := m.Status != l.status
	if changed {
		l.status, l.decile = m.Status, -1
	}
	cur, total, ok := progressOf(m)
	switch {
	case !ok:
		if changed {
			_, _ = fmt.Fprintf(s.w, "%s: %s\n", m.ID, m.Status)
		}
	case total > 0:
		d := decile(cur, total)
		if d > l.decile {
			l.decile = d
			_, _ = fmt.Fprintf(s.w, "%s: %s %s/%s (%d%%)\n", m.ID, m.Status,
				units.HumanSize(float64(cur)), units.HumanSize(float64(total)), percent(cur, total))
		}
	default: // size unknown: once per status
		if changed {
			_, _ = fmt.Fprintf(s.w, "%s: %s %s\n", m.ID, m.Status, units.HumanSize(float64(cur)))
		}
	}
}

func (s *plainSink) finish(Result, bool) {}

// percent is 100*cur/total clamped to 0..100, without overflow.
func percent(cur, total int64) int {
	if total <= 0 {
		return 0
	}
	p := int(float64(cur) / float64(total) * 100)
	return min(max(p, 0), 100)
}

// decile is the tenth of total reached, 0..10.
func decile(cur, total int64) int { return percent(cur, total) / 10 }
