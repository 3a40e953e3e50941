package testregistry

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequestLog is one request seen by a FaultProxy.
type RequestLog struct {
	Method string
	Path   string // URL path, without the query
	Range  string // the request's Range header, if any
	Status int    // the status the client was sent
	Fault  string // "", "fail", "cut", "corrupt", "intercept" or "upstream-error"
	Bytes  int64  // response body bytes the client was sent
	Done   bool   // the proxy has finished answering
}

// FaultProxy is an HTTP reverse proxy, on its own loopback port, that
// forwards requests to a registry and injects faults on command: failed
// requests, blob downloads cut short, corrupted blob bodies. Requests are
// forwarded as they are (Range headers included, and the Host header, so
// that the registry's upload Locations point back at the proxy), and answers
// are sent back as they are (206 partial content included), streamed.
//
// Faults are consumed in the order requests arrive; FailNext applies first,
// then Intercept, then the blob faults.
type FaultProxy struct {
	target *url.URL
	host   string
	srv    *http.Server
	tr     *http.Transport

	mu        sync.Mutex
	fail      int
	failCode  int
	failBody  string
	cutN      int64
	cutTimes  int
	corrupt   int
	intercept []*interceptor
	log       []*RequestLog
}

type interceptor struct {
	match func(*http.Request) bool
	h     http.Handler
	times int // < 0: forever
}

// NewFaultProxy starts a FaultProxy on a free 127.0.0.1 port that forwards to
// target, a base URL such as Registry.URL(). It is closed by t.Cleanup.
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		t.Fatalf("testregistry: bad proxy target %q: %v", target, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testregistry: proxy listen: %v", err)
	}
	p := &FaultProxy{
		target: u,
		host:   l.Addr().String(),
		tr: &http.Transport{
			DisableCompression:  true,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(l) }()
	t.Cleanup(func() {
		_ = p.srv.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

// Host returns the proxy's address, "127.0.0.1:PORT": use it in references
// in place of the registry's host.
func (p *FaultProxy) Host() string { return p.host }

// URL returns the proxy's base URL, "http://127.0.0.1:PORT".
func (p *FaultProxy) URL() string { return "http://" + p.host }

// Ref returns Host() + "/" + repoAndTag.
func (p *FaultProxy) Ref(repoAndTag string) string { return p.host + "/" + repoAndTag }

// CutBlobsAfter makes the next `times` blob downloads (GET requests whose
// path contains /blobs/, uploads excepted) stop after n body bytes: the
// status line and headers (with the full Content-Length) are sent, then n
// bytes of the body, then the connection is closed abruptly, so the client
// sees a short read (io.ErrUnexpectedEOF). If the body is shorter than n,
// it is sent whole and the connection closed all the same. (The registry
// always sends a Content-Length with blobs; without one, a cut body would
// look complete.)
func (p *FaultProxy) CutBlobsAfter(n int64, times int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutN, p.cutTimes = n, times
}

// FailNext makes the next `times` requests, whatever they are, answer status
// with body (as text/plain), without reaching the registry.
func (p *FaultProxy) FailNext(status int, times int, body string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail, p.failCode, p.failBody = times, status, body
}

// Corrupt makes the next `times` blob downloads (as for CutBlobsAfter) flip
// one byte of the body (the one in the middle, by Content-Length, or the
// first if the length is unknown), leaving the length as it is. A download
// that is also cut is cut, not corrupted.
func (p *FaultProxy) Corrupt(times int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.corrupt = times
}

// Intercept makes the next `times` requests for which match returns true
// (all of them from now on, if times < 0) be answered by h instead of the
// registry: use it to serve content the registry would refuse to store,
// such as a malformed manifest.
func (p *FaultProxy) Intercept(match func(*http.Request) bool, h http.Handler, times int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.intercept = append(p.intercept, &interceptor{match: match, h: h, times: times})
}

// Reset clears all pending faults and interceptions (not the request log).
func (p *FaultProxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail, p.cutTimes, p.corrupt, p.intercept = 0, 0, 0, nil
}

// Requests returns a copy of the log of the requests received so far, in the
// order they arrived. A request enters the log when it arrives and is
// completed (Status, Bytes, Done) when the proxy has finished answering it,
// which may be a moment after the client has read the whole answer: so
// Requests first waits, up to 2 seconds, for all logged requests to be done.
func (p *FaultProxy) Requests() []RequestLog {
	deadline := time.Now().Add(2 * time.Second)
	for {
		p.mu.Lock()
		out := make([]RequestLog, len(p.log))
		done := true
		for i, e := range p.log {
			out[i] = *e
			done = done && e.Done
		}
		p.mu.Unlock()
		if done || time.Now().After(deadline) {
			return out
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ClearRequests empties the request log, including requests still being
// answered.
func (p *FaultProxy) ClearRequests() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = nil
}

func isBlobGet(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") &&
		!strings.Contains(r.URL.Path, "/blobs/uploads/")
}

// plan is what to do with one request, decided when it arrives.
type plan struct {
	fault     string
	failCode  int
	failBody  string
	h         http.Handler
	cutAfter  int64
	corrupted bool
}

func (p *FaultProxy) plan(r *http.Request) plan {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail > 0 {
		p.fail--
		return plan{fault: "fail", failCode: p.failCode, failBody: p.failBody}
	}
	for i, ic := range p.intercept {
		if ic.match(r) {
			if ic.times > 0 {
				ic.times--
				if ic.times == 0 {
					p.intercept = append(p.intercept[:i:i], p.intercept[i+1:]...)
				}
			}
			return plan{fault: "intercept", h: ic.h}
		}
	}
	if isBlobGet(r) {
		if p.cutTimes > 0 {
			p.cutTimes--
			return plan{fault: "cut", cutAfter: p.cutN}
		}
		if p.corrupt > 0 {
			p.corrupt--
			return plan{fault: "corrupt", corrupted: true}
		}
	}
	return plan{}
}

// begin logs r as it arrives.
func (p *FaultProxy) begin(r *http.Request, fault string) *RequestLog {
	e := &RequestLog{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"), Fault: fault}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, e)
	return e
}

// finish completes e once the answer has been sent.
func (p *FaultProxy) finish(e *RequestLog, status int, fault string, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.Status, e.Fault, e.Bytes, e.Done = status, fault, n, true
}

// hopHeaders are the hop-by-hop headers a proxy must not forward.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, k := range strings.Split(f, ",") {
			if k = strings.TrimSpace(k); k != "" {
				h.Del(k)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// ServeHTTP implements http.Handler.
func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pl := p.plan(r)
	e := p.begin(r, pl.fault)
	switch pl.fault {
	case "fail":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(pl.failBody)))
		w.WriteHeader(pl.failCode)
		n, _ := io.WriteString(w, pl.failBody)
		p.finish(e, pl.failCode, pl.fault, int64(n))
		return
	case "intercept":
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		pl.h.ServeHTTP(rec, r)
		p.finish(e, rec.status, pl.fault, rec.n)
		return
	}

	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = p.target.Scheme
	out.URL.Host = p.target.Host
	out.Host = r.Host // so the registry builds URLs that point back here
	removeHopHeaders(out.Header)
	if r.ContentLength == 0 {
		out.Body = nil
	}
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, "testregistry proxy: "+err.Error(), http.StatusBadGateway)
		p.finish(e, http.StatusBadGateway, "upstream-error", 0)
		return
	}
	defer resp.Body.Close()
	removeHopHeaders(resp.Header)

	if pl.fault == "cut" {
		n, ok := p.cut(w, resp, pl.cutAfter)
		p.finish(e, resp.StatusCode, pl.fault, n)
		if !ok {
			panic(http.ErrAbortHandler) // cannot hijack: abort the connection
		}
		return
	}

	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	var body io.Reader = resp.Body
	if pl.corrupted {
		at := int64(0)
		if resp.ContentLength > 0 {
			at = resp.ContentLength / 2
		}
		body = &flipReader{r: resp.Body, at: at}
	}
	n, _ := io.Copy(flushWriter{w}, body)
	p.finish(e, resp.StatusCode, pl.fault, n)
}

// cut sends resp's status line and headers and n bytes of its body straight
// on the hijacked connection, then closes it.
func (p *FaultProxy) cut(w http.ResponseWriter, resp *http.Response, n int64) (sent int64, ok bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return 0, false
	}
	conn, bw, err := hj.Hijack()
	if err != nil {
		return 0, false
	}
	defer conn.Close()
	fmt.Fprintf(bw, "HTTP/1.1 %s\r\n", resp.Status)
	h := resp.Header.Clone()
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	h.Set("Connection", "close")
	_ = h.Write(bw)
	_, _ = bw.WriteString("\r\n")
	sent, _ = io.Copy(bw, io.LimitReader(resp.Body, n))
	_ = bw.Flush()
	return sent, true
}

// flipReader inverts the byte at offset at of the stream.
type flipReader struct {
	r   io.Reader
	off int64
	at  int64
}

func (f *flipReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if f.at >= f.off && f.at < f.off+int64(n) {
		b[f.at-f.off] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}

// flushWriter flushes after each write, so streamed bodies are not held back.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	n           int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	n, err := s.ResponseWriter.Write(b)
	s.n += int64(n)
	return n, err
}
