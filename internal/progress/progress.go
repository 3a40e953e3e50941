// Package progress renders a Docker-style JSON message stream (the body of
// dockerd's POST /images/create, which Flick's daemon also speaks) in the
// terminal the way `docker pull` does.
//
// The stream is a sequence of jsonstream.Message objects, normally one per
// line: a header ({"status":"Pulling from library/alpine","id":"latest"}),
// per-layer statuses keyed by the layer's short ID ("Pulling fs layer",
// "Waiting", "Downloading" with progressDetail, "Verifying Checksum",
// "Download complete", "Extracting", "Pull complete", "Already exists", and
// whatever else the daemon may add, such as "Delta" statuses), and footer
// lines without an ID ("Digest: sha256:…", "Status: Downloaded newer image
// for …"). An error is {"errorDetail":{"message":"…"},"error":"…"}.
package progress

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/moby/moby/api/types/jsonstream"
	"github.com/vbauerster/cupwriter"

	"github.com/flick-edge/flick/internal/errdefs"
)

// Options select how Render draws.
type Options struct {
	// Quiet prints only the final image reference (taken from the
	// "Status: … for <ref>" line), like `docker pull -q`.
	Quiet bool
	// JSON copies the message stream to the writer verbatim, one JSON
	// value per line, for scripts. It takes precedence over Quiet.
	JSON bool
	// ForceTTY overrides terminal detection: true draws progress bars even
	// when the writer is not a terminal (with an 80-column width), false
	// prints plain lines even on a terminal. Nil detects: bars only when the
	// writer is an *os.File that is a terminal.
	ForceTTY *bool
}

// Result is what the final lines of the stream said. Fields are "" when the
// stream did not say.
type Result struct {
	// Digest is the text after "Digest: ", e.g. "sha256:…".
	Digest string
	// Status is the text after "Status: ", e.g. "Downloaded newer image
	// for docker.io/library/alpine:latest".
	Status string
	// Ref is the reference at the end of Status, after its last " for ",
	// e.g. "docker.io/library/alpine:latest".
	Ref string
}

// message is a jsonstream.Message plus the legacy top-level "error" string
// that dockerd sends alongside errorDetail.
type message struct {
	jsonstream.Message
	ErrorText string `json:"error,omitempty"`
}

// errorMessage returns the error the message carries, or "".
func (m *message) errorMessage() (int, string) {
	if m.Error != nil && m.Error.Message != "" {
		return m.Error.Code, m.Error.Message
	}
	if m.Error != nil && m.ErrorText == "" {
		return m.Error.Code, "unknown error (empty errorDetail)"
	}
	return 0, m.ErrorText
}

// progressOf returns a message's byte progress; ok is false when it has none
// (docker sends "progressDetail":{} with statuses that have no progress).
func progressOf(m *message) (current, total int64, ok bool) {
	p := m.Progress
	if p == nil || (p.Current <= 0 && p.Total <= 0) {
		return 0, 0, false
	}
	return max(p.Current, 0), max(p.Total, 0), true
}

// sink draws messages in one of the output modes.
type sink interface {
	// message draws one (non-error) message; raw is its JSON text.
	message(m *message, raw []byte)
	// finish ends drawing. failed is true when the stream ends in an error
	// or was abandoned; res is what the stream said.
	finish(res Result, failed bool)
}

// Render reads the message stream from r and draws it to w until the stream
// ends, an error message arrives, or ctx is done, and returns what the final
// lines said.
//
// The mode is chosen by opts: JSON (a verbatim copy, one value per line),
// Quiet (only the final reference, and only on success), bars (when w is a
// terminal, or opts.ForceTTY says so: a line per layer ID with its status, a
// docker-style bar and "current/total" in human units; header and other
// lines above the bars, "Digest:"/"Status:" lines below them), or plain lines
// otherwise (each status change once per layer, "abc123def456: Pull
// complete", and at most one progress line per layer per 10%, so logs stay
// short).
//
// Errors: the first error message in the stream is returned as an error
// wrapping a *jsonstream.Error (classified with errdefs when it has an HTTP
// code) and is not drawn, except in JSON mode where it is copied like any
// other message; the caller prints it. A stream that is not JSON, or that
// breaks off mid-message, gives a read error; a write error on w is
// returned too. On ctx.Done Render returns ctx.Err() at once; r is read by a
// goroutine that ends when a read returns, so callers should close r (e.g.
// the HTTP response body) when they cancel.
func Render(ctx context.Context, r io.Reader, w io.Writer, opts Options) (Result, error) {
	ew := &errWriter{w: w}
	var s sink
	switch {
	case opts.JSON:
		s = &jsonSink{w: ew}
	case opts.Quiet:
		s = &quietSink{w: ew}
	case useTTY(w, opts.ForceTTY):
		s = newTTYSink(ctx, ew, w, forcedTTY(w, opts.ForceTTY))
	default:
		s = &plainSink{w: ew, layers: map[string]*plainLayer{}}
	}

	type item struct {
		raw json.RawMessage
		err error
	}
	items := make(chan item)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(items)
		dec := json.NewDecoder(r)
		for {
			var it item
			it.err = dec.Decode(&it.raw)
			if it.err == io.EOF {
				return
			}
			select {
			case items <- it:
			case <-stop:
				return
			}
			if it.err != nil {
				return
			}
		}
	}()

	var res Result
	for {
		var it item
		var ok bool
		select {
		case <-ctx.Done():
			s.finish(res, true)
			return res, ctx.Err()
		case it, ok = <-items:
		}
		if !ok {
			break
		}
		if it.err != nil {
			s.finish(res, true)
			return res, fmt.Errorf("progress: reading message stream: %w", it.err)
		}
		var m message
		if err := json.Unmarshal(it.raw, &m); err != nil {
			s.finish(res, true)
			return res, fmt.Errorf("progress: reading message stream: bad message %.100q: %w", it.raw, err)
		}
		if code, text := m.errorMessage(); text != "" {
			if _, isJSON := s.(*jsonSink); isJSON {
				s.message(&m, it.raw)
			}
			s.finish(res, true)
			return res, classify(&jsonstream.Error{Code: code, Message: text})
		}
		if m.ID == "" {
			if v, ok := strings.CutPrefix(m.Status, "Digest: "); ok {
				res.Digest = strings.TrimSpace(v)
			} else if v, ok := strings.CutPrefix(m.Status, "Status: "); ok {
				res.Status = strings.TrimSpace(v)
				if i := strings.LastIndex(res.Status, " for "); i >= 0 {
					res.Ref = strings.TrimSpace(res.Status[i+len(" for "):])
				}
			}
		}
		s.message(&m, it.raw)
	}
	s.finish(res, false)
	if ew.err != nil {
		return res, fmt.Errorf("progress: writing: %w", ew.err)
	}
	return res, nil
}

// classify wraps a stream error in the errdefs class its HTTP code implies.
func classify(e *jsonstream.Error) error {
	switch e.Code {
	case http.StatusBadRequest:
		return errdefs.NewInvalidArgument(e)
	case http.StatusUnauthorized, http.StatusForbidden:
		return errdefs.NewUnauthorized(e)
	case http.StatusNotFound:
		return errdefs.NewNotFound(e)
	case http.StatusConflict:
		return errdefs.NewConflict(e)
	case http.StatusTooManyRequests:
		return errdefs.NewResourceExhausted(e)
	case http.StatusNotImplemented:
		return errdefs.NewNotImplemented(e)
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return errdefs.NewUnavailable(e)
	}
	return e
}

// useTTY decides between bars and plain lines.
func useTTY(w io.Writer, force *bool) bool {
	if force != nil {
		return *force
	}
	return isTerminal(w)
}

// forcedTTY reports whether bars were asked for on something that is not a
// terminal (so mpb must be told to draw anyway).
func forcedTTY(w io.Writer, force *bool) bool { return force != nil && *force && !isTerminal(w) }

// isTerminal reports whether w is an *os.File open on a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && cupwriter.New(f, false).IsTerminal()
}

// errWriter remembers the first write error and drops writes after it.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// jsonSink copies each message on a line of its own.
type jsonSink struct{ w io.Writer }

func (s *jsonSink) message(_ *message, raw []byte) {
	if bytes.ContainsAny(raw, "\r\n") {
		var buf bytes.Buffer
		if json.Compact(&buf, raw) == nil {
			raw = buf.Bytes()
		}
	}
	_, _ = s.w.Write(append(raw[:len(raw):len(raw)], '\n'))
}

func (s *jsonSink) finish(Result, bool) {}

// quietSink prints the final reference only.
type quietSink struct{ w io.Writer }

func (s *quietSink) message(*message, []byte) {}

func (s *quietSink) finish(res Result, failed bool) {
	if !failed && res.Ref != "" {
		_, _ = io.WriteString(s.w, res.Ref+"\n")
	}
}
