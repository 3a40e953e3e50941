package progress

import (
	"context"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/docker/go-units"
	"github.com/vbauerster/cupwriter"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// barWidth is the width of the [====>    ] bar, brackets included, as docker
// draws it.
const barWidth = 52

// ttySink draws one mpb bar per ID. The bars show state kept here (status,
// current, total), read by the decorators at each refresh; mpb's own
// counters are only used to complete the bars at the end. Lines without an ID
// are printed above the bars, except the "Digest:"/"Status:" footer, which is
// printed below them once they are done.
type ttySink struct {
	ctx    context.Context
	w      io.Writer // the errWriter around the output
	term   *os.File  // the output, when it is a terminal
	forced bool
	p      *mpb.Progress // created at the first ID
	layers map[string]*ttyLayer
	order  []*ttyLayer
	footer []string
}

type ttyLayer struct {
	id  string
	bar *mpb.Bar

	mu     sync.Mutex // guards the fields below, shared with mpb's goroutines
	status string
	cur    int64
	total  int64
	prog   bool
}

// newTTYSink draws to w (wrapping out). forced says out is not a terminal
// but bars were asked for.
func newTTYSink(ctx context.Context, w, out io.Writer, forced bool) *ttySink {
	s := &ttySink{ctx: ctx, w: w, forced: forced, layers: map[string]*ttyLayer{}}
	if f, ok := out.(*os.File); ok && !forced {
		s.term = f
	}
	return s
}

// above prints text above the bars (or straight out before there are any).
func (s *ttySink) above(text string) {
	if s.p == nil {
		_, _ = io.WriteString(s.w, text)
		return
	}
	_, _ = s.p.Write([]byte(text))
}

func (s *ttySink) message(m *message, _ []byte) {
	if m.Stream != "" {
		s.above(m.Stream)
	}
	switch {
	case m.ID == "" && m.Status == "":
		return
	case m.ID == "":
		if len(s.footer) > 0 || strings.HasPrefix(m.Status, "Digest: ") || strings.HasPrefix(m.Status, "Status: ") {
			s.footer = append(s.footer, m.Status)
		} else {
			s.above(m.Status + "\n")
		}
		return
	case strings.HasPrefix(m.Status, "Pulling from "):
		s.above(m.ID + ": " + m.Status + "\n")
		return
	}
	l := s.layers[m.ID]
	if l == nil {
		l = s.addLayer(m.ID)
	}
	cur, total, ok := progressOf(m)
	l.mu.Lock()
	l.status, l.cur, l.total, l.prog = m.Status, cur, total, ok
	l.mu.Unlock()
}

func (s *ttySink) addLayer(id string) *ttyLayer {
	if s.p == nil {
		// mpb writes through s.w (so write errors are seen) but must
		// know the terminal's descriptor to ask for its size.
		cw := cupwriter.New(s.w, s.forced)
		if s.term != nil {
			cw.SetTermFd(int(s.term.Fd()))
		}
		opts := []mpb.ContainerOption{mpb.WithConsoleWriter(cw)}
		if s.forced {
			opts = append(opts, mpb.ForceTTY(), mpb.WithAutoRefresh(), mpb.WithWidth(80))
		}
		s.p = mpb.NewWithContext(s.ctx, opts...)
	}
	l := &ttyLayer{id: id}
	bar, err := s.p.Add(0, mpb.BarFillerFunc(l.fill),
		mpb.BarFillerTrim(),
		mpb.PrependDecorators(decor.Any(l.label)),
		mpb.AppendDecorators(decor.Any(l.size)),
	)
	if err == nil { // err only after the container is done (ctx cancelled)
		l.bar = bar
	}
	s.layers[id] = l
	s.order = append(s.order, l)
	return l
}

// label is "abc123def456: Downloading".
func (l *ttyLayer) label(decor.Statistics) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id + ": " + l.status
}

// size is " 1.2MB/3.4MB", " 1.2MB" or "".
func (l *ttyLayer) size(decor.Statistics) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case !l.prog:
		return ""
	case l.total > 0:
		return " " + units.HumanSize(float64(l.cur)) + "/" + units.HumanSize(float64(l.total))
	default:
		return " " + units.HumanSize(float64(l.cur))
	}
}

// fill draws " [=====>      ]" while the layer has a known total.
func (l *ttyLayer) fill(w io.Writer, st decor.Statistics) error {
	l.mu.Lock()
	cur, total, prog := l.cur, l.total, l.prog
	l.mu.Unlock()
	width := min(barWidth, st.AvailableWidth-1)
	if !prog || total <= 0 || width < 4 {
		return nil
	}
	inner := width - 2
	done := int(float64(inner) * float64(min(cur, total)) / float64(total))
	var b strings.Builder
	b.WriteString(" [")
	switch {
	case done >= inner:
		b.WriteString(strings.Repeat("=", inner))
	case done > 0:
		b.WriteString(strings.Repeat("=", done-1) + ">" + strings.Repeat(" ", inner-done))
	default:
		b.WriteString(strings.Repeat(" ", inner))
	}
	b.WriteString("]")
	_, err := io.WriteString(w, b.String())
	return err
}

func (s *ttySink) finish(_ Result, failed bool) {
	if s.p != nil {
		for _, l := range s.order {
			if l.bar == nil {
				continue
			}
			if failed {
				l.bar.Abort(false)
			} else {
				l.bar.SetTotal(-1, true)
			}
		}
		s.p.Wait()
		s.p = nil
	}
	for _, line := range s.footer {
		_, _ = io.WriteString(s.w, line+"\n")
	}
	s.footer = nil
}
