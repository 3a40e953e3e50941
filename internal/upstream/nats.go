package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MsgIDHeader is the NATS header carrying Message.ID; JetStream
// de-duplicates on it within the stream's duplicate window.
const MsgIDHeader = jetstream.MsgIDHeader

// streamTTL is how long a subject's "belongs to a stream" answer is kept.
const streamTTL = time.Minute

// natsSender is the Sender for NATS upstreams. The first connection is made
// by our loop (so that its error is known at once); after that nats.go
// reconnects by itself, with our back-off.
type natsSender struct {
	r    resolved
	hub  string
	o    Options
	opts []nats.Option

	lifecycle
	nc     *nats.Conn          // under mu
	js     jetstream.JetStream // under mu
	viol   []violation         // under mu: recent publish permission violations
	violCh chan struct{}       // under mu: closed (and replaced) when one is recorded

	sendMu  sync.Mutex // one Send at a time; guards streams
	streams map[string]streamEntry

	closedCh chan struct{} // the connection reached CLOSED
}

type streamEntry struct {
	stream bool
	until  time.Time
}

type violation struct {
	seq     uint64
	subject string
	err     error
}

func newNATSSender(r resolved, hub string, o Options) (*natsSender, error) {
	s := &natsSender{r: r, hub: hub, o: o, streams: map[string]streamEntry{},
		violCh: make(chan struct{}), closedCh: make(chan struct{}, 1)}
	s.init(r.URL, o)
	s.opts = []nats.Option{
		nats.Name("flick hub " + hub),
		nats.Timeout(o.ConnectTimeout),
		nats.PingInterval(o.KeepAlive),
		nats.MaxPingsOutstanding(2),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(-1), // a publish while disconnected fails instead of being queued
		nats.IgnoreAuthErrorAbort(),
		nats.NoCallbacksAfterClientClose(),
		nats.CustomReconnectDelay(s.reconnectDelay),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			e := lostErr("connection lost", 0, err).with(s.r.URL, "")
			s.setConnErr(e)
			s.tr.disconnected(e)
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			s.setConnErr(nil)
			s.tr.connected()
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { s.connectFailed(err) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			switch {
			case errors.Is(err, nats.ErrPermissionViolation):
				s.recordViolation(err)
			case isAuthErr(err):
				s.connectFailed(err)
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			select {
			case s.closedCh <- struct{}{}:
			default:
			}
		}),
	}
	switch {
	case r.CredsFile != "":
		s.opts = append(s.opts, nats.UserCredentials(r.CredsFile))
	case r.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(r.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: nkey file: %w", r.URL, err)
		}
		s.opts = append(s.opts, opt)
	case r.Username != "" && r.Password == "":
		s.opts = append(s.opts, nats.Token(r.Username))
	case r.Username != "":
		s.opts = append(s.opts, nats.UserInfo(r.Username, r.Password))
	}
	if r.tls {
		cfg, err := tlsConfig(r)
		if err != nil {
			return nil, err
		}
		s.opts = append(s.opts, nats.Secure(cfg))
	}
	s.start(s.run)
	return s, nil
}

func (s *natsSender) serverURL() string {
	scheme := "nats"
	if s.r.tls {
		scheme = "tls"
	}
	return (&url.URL{Scheme: scheme, Host: s.r.addr()}).String()
}

func isAuthErr(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

// classifyNATS classifies a connection error.
func classifyNATS(err error) *Error {
	switch {
	case isAuthErr(err):
		return permanent("connection refused: not authorized", 0, err)
	case errors.Is(err, nats.ErrSecureConnRequired), errors.Is(err, nats.ErrSecureConnWanted):
		return permanent("TLS required on one side only", 0, err)
	case errors.Is(err, nats.ErrNoServers):
		return retryable("connection failed", err)
	}
	return classifyNetErr(err)
}

func (s *natsSender) connectFailed(err error) {
	e := classifyNATS(err).with(s.r.URL, "")
	s.setConnErr(e)
	s.tr.connectFailed(e)
}

// reconnectDelay is nats.go's delay before reconnect attempt n.
func (s *natsSender) reconnectDelay(n int) time.Duration {
	s.mu.Lock()
	nc, ce := s.nc, s.connErr
	s.mu.Unlock()
	if nc != nil {
		// An auth error of the previous attempt is only in LastError
		// while nats.go is in this callback (initial connect or not).
		if err := nc.LastError(); err != nil && isAuthErr(err) {
			if ce == nil || !ce.Permanent {
				s.connectFailed(err)
			}
			ce = classifyNATS(err)
		}
	}
	if ce != nil && ce.Permanent {
		return backoff(64, s.o.MinBackoff, s.o.MaxBackoff)
	}
	return backoff(n, s.o.MinBackoff, s.o.MaxBackoff)
}

func (s *natsSender) run() {
	defer close(s.done)
	defer s.firstDone()
	attempt := 0
	for {
		nc, err := nats.Connect(s.serverURL(), s.opts...)
		if err == nil && s.ctx.Err() == nil {
			js, jerr := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(s.o.AckTimeout))
			if jerr != nil { // cannot happen with these options
				nc.Close()
				err = jerr
			} else {
				attempt = 0
				s.mu.Lock()
				s.nc, s.js, s.connErr = nc, js, nil
				s.mu.Unlock()
				s.tr.connected()
				s.firstDone()
				select {
				case <-s.ctx.Done():
				case <-s.closedCh:
				}
				s.mu.Lock()
				s.nc, s.js = nil, nil
				s.mu.Unlock()
				nc.Close()
				if s.ctx.Err() != nil {
					s.tr.disconnected(nil)
					return
				}
				e := lostErr("connection closed", 0, nc.LastError()).with(s.r.URL, "")
				s.setConnErr(e)
				s.tr.disconnected(e)
			}
		} else if err == nil {
			nc.Close()
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		wait := backoff(1, s.o.MinBackoff, s.o.MaxBackoff)
		if err != nil {
			s.connectFailed(err)
			s.firstDone()
			attempt++
			wait = backoff(attempt, s.o.MinBackoff, s.o.MaxBackoff)
			if classifyNATS(err).Permanent {
				wait = backoff(64, s.o.MinBackoff, s.o.MaxBackoff)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
}

var violationRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)publish to "([^"]+)"`) })

func (s *natsSender) recordViolation(err error) {
	m := violationRe().FindStringSubmatch(err.Error())
	if m == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var seq uint64 = 1
	if n := len(s.viol); n > 0 {
		seq = s.viol[n-1].seq + 1
	}
	if len(s.viol) >= 64 {
		s.viol = s.viol[1:]
	}
	s.viol = append(s.viol, violation{seq: seq, subject: m[1], err: err})
	close(s.violCh)
	s.violCh = make(chan struct{})
}

// violationMark is the sequence number of the newest violation recorded.
func (s *natsSender) violationMark() (uint64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.viol); n > 0 {
		return s.viol[n-1].seq, s.violCh
	}
	return 0, s.violCh
}

// violated returns the violation for subject recorded after mark.
func (s *natsSender) violated(mark uint64, subject string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.viol {
		if v.seq > mark && v.subject == subject {
			return v.err
		}
	}
	return nil
}

func (s *natsSender) current() (*nats.Conn, jetstream.JetStream, *Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, nil, retryable("sender closed", ErrClosed)
	case s.nc != nil && s.nc.IsConnected():
		return s.nc, s.js, nil
	case s.connErr != nil && s.connErr.Permanent:
		return nil, nil, s.connErr
	case s.connErr != nil:
		return nil, nil, retryable("not connected", s.connErr)
	}
	return nil, nil, retryable("not connected", nil)
}

// isStream reports whether subject belongs to a JetStream stream (cached).
func (s *natsSender) isStream(ctx context.Context, js jetstream.JetStream, subject string) (bool, *Error) {
	if e, ok := s.streams[subject]; ok && time.Now().Before(e.until) {
		return e.stream, nil
	}
	lctx, cancel := context.WithTimeout(ctx, s.o.ConnectTimeout)
	defer cancel()
	_, err := js.StreamNameBySubject(lctx, subject)
	stream := err == nil
	switch {
	case err == nil, errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount), errors.Is(err, nats.ErrNoResponders):
	case ctx.Err() != nil:
		return false, retryable("timeout looking up the stream", err)
	default:
		// No answer from the JetStream API (not allowed to ask?): publish
		// plainly for a while.
		s.o.Logger.Warn("upstream: JetStream stream lookup failed; publishing without JetStream acknowledgements", "url", s.r.URL, "subject", subject, "err", err)
	}
	if len(s.streams) > 4096 {
		clear(s.streams)
	}
	s.streams[subject] = streamEntry{stream: stream, until: time.Now().Add(streamTTL)}
	return stream, nil
}

func checkHeaders(attrs map[string]string) error {
	for k, v := range attrs {
		if k == "" || strings.ContainsAny(k, ": \t\r\n") || strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("attribute %q=%q: NATS header names cannot be empty or contain ':' or white space, values cannot contain line breaks", k, v)
		}
	}
	return nil
}

// pubErr classifies an error of a NATS publish.
func pubErrNATS(err error) *Error {
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		return permanent("payload too large", 0, err)
	case errors.Is(err, nats.ErrBadSubject), errors.Is(err, nats.ErrBadHeaderMsg):
		return permanent("bad subject or header", 0, err)
	case errors.Is(err, nats.ErrPermissionViolation):
		return permanent("not authorized", 0, err)
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return retryable("timeout waiting for the acknowledgement", err)
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		return retryable("no response from the stream", err)
	}
	var ae *jetstream.APIError
	if errors.As(err, &ae) {
		e := &Error{Permanent: ae.Code < 500, Reason: "JetStream: " + ae.Description, Code: int(ae.ErrorCode), Err: err}
		return e
	}
	return lostErr("connection lost", 0, err)
}

func (s *natsSender) Send(ctx context.Context, msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.o.AckTimeout)
	defer cancel()
	written, acked, dups, e := s.send(ctx, msgs)
	if e == nil {
		s.tr.sent(written, acked, dups, nil)
		return acked, nil
	}
	e = e.with(s.r.URL, msgs[acked].ID)
	s.tr.sent(written, acked, dups, e)
	return acked, e
}

func (s *natsSender) send(ctx context.Context, msgs []Message) (written, acked, dups int, stop *Error) {
	out := make([]*nats.Msg, 0, len(msgs))
	for _, m := range msgs {
		subj, err := s.r.target(m.Topic, s.hub)
		if err != nil {
			stop = permanent("bad subject", 0, err)
			break
		}
		if err := checkHeaders(m.Attrs); err != nil {
			stop = permanent("bad attribute", 0, err)
			break
		}
		nm := nats.NewMsg(subj)
		nm.Data = m.Payload
		for k, v := range m.Attrs {
			nm.Header.Set(k, v)
		}
		if m.ID != "" {
			nm.Header.Set(MsgIDHeader, m.ID)
		}
		out = append(out, nm)
	}
	if len(out) == 0 {
		return 0, 0, 0, stop
	}
	nc, js, cerr := s.current()
	if nc == nil {
		return 0, 0, 0, cerr
	}
	streams := make([]bool, len(out))
	for i, m := range out {
		st, err := s.isStream(ctx, js, m.Subject)
		if err != nil {
			return 0, 0, 0, err
		}
		streams[i] = st
	}
	mark, _ := s.violationMark()
	lastErr := nc.LastError()
	futures := make([]jetstream.PubAckFuture, len(out))
	var werr *Error
	plain := false
	for i, m := range out {
		var err error
		if streams[i] {
			futures[i], err = js.PublishMsgAsync(m)
		} else {
			err = nc.PublishMsg(m)
			plain = true
		}
		if err != nil {
			werr = pubErrNATS(err)
			break
		}
		written++
	}
	var flushErr *Error
	if plain {
		if err := nc.FlushWithContext(ctx); err != nil {
			flushErr = retryable("flush", err)
			if ctx.Err() == nil {
				flushErr = lostErr("connection lost", 0, err)
			}
		} else if le := nc.LastError(); le != lastErr && errors.Is(le, nats.ErrPermissionViolation) {
			// Read before the PONG: no need to wait for the async handler.
			s.recordViolation(le)
		}
	}
	for i := 0; i < written; i++ {
		f := futures[i]
		if f == nil {
			if flushErr != nil {
				return written, acked, dups, flushErr
			}
			if err := s.violated(mark, out[i].Subject); err != nil {
				return written, acked, dups, permanent("not authorized", 0, err)
			}
			acked++
			continue
		}
	wait:
		for {
			_, vch := s.violationMark()
			select {
			case pa := <-f.Ok():
				if pa.Duplicate {
					dups++
				}
				break wait
			case err := <-f.Err():
				if errors.Is(err, jetstream.ErrNoStreamResponse) {
					delete(s.streams, out[i].Subject) // the stream is gone?
				}
				return written, acked, dups, pubErrNATS(err)
			case <-vch:
				if err := s.violated(mark, out[i].Subject); err != nil {
					return written, acked, dups, permanent("not authorized", 0, err)
				}
			case <-ctx.Done():
				return written, acked, dups, retryable("timeout waiting for the acknowledgement", ctx.Err())
			}
		}
		acked++
	}
	if werr != nil {
		return written, acked, dups, werr
	}
	return written, acked, dups, stop
}
