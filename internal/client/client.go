// Package client is the flick CLI's client for a Flick daemon's API (the
// Docker Engine API over a unix socket). It is deliberately thin: JSON in and
// out, errors carried back with their class so the CLI can pick exit codes and
// hints.
package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/flick-edge/flick/internal/config"
	"github.com/flick-edge/flick/internal/dockerapi"
	"github.com/flick-edge/flick/internal/errdefs"
)

// Client talks to one daemon.
type Client struct {
	socket string
	http   *http.Client
}

// HostFromEnv picks the daemon address: the flag if set, then FLICK_HOST, then
// the default socket.
func HostFromEnv(flag string) string {
	if flag != "" {
		return flag
	}
	if h := os.Getenv("FLICK_HOST"); h != "" {
		return h
	}
	return config.DefaultHost
}

// New returns a client for host ("unix:///run/flick/flick.sock").
func New(host string) (*Client, error) {
	p, err := config.SocketPath(host)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{socket: p, http: &http.Client{Transport: tr}}, nil
}

// Do sends a request; body, if not nil, is JSON-encoded unless it is an
// io.Reader. A non-2xx answer becomes an error with the daemon's message and
// class. The caller closes the response body.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body any, header http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		if r, ok := body.(io.Reader); ok {
			rd = r
		} else {
			b, err := json.Marshal(body)
			if err != nil {
				return nil, err
			}
			rd = strings.NewReader(string(b))
		}
	}
	u := "http://flick/v" + dockerapi.APIVersion + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.connError(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e struct{ Message string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		return nil, errdefs.New(dockerapi.ClassOfStatus(resp.StatusCode), errors.New(msg))
	}
	return resp, nil
}

// JSON sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) JSON(ctx context.Context, method, path string, query url.Values, body, out any) error {
	resp, err := c.Do(ctx, method, path, query, body, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode daemon answer to %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) connError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return errdefs.NewUnavailable(fmt.Errorf("cannot connect to the Flick daemon at unix://%s: is it running? Start it with 'flick daemon' (or set -H / FLICK_HOST)", c.socket))
	case errors.Is(err, syscall.EACCES):
		return errdefs.NewUnauthorized(fmt.Errorf("permission denied on unix://%s: run as root or add yourself to the 'flick' group", c.socket))
	}
	return errdefs.NewUnavailable(err)
}

// Hijack sends a POST that upgrades the connection to a raw stream (as
// Docker's attach and exec start do) and returns the connection and a
// reader positioned after the response headers.
func (c *Client) Hijack(ctx context.Context, path string, query url.Values) (net.Conn, *bufio.Reader, error) {
	u := path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return c.hijack(ctx, u, nil)
}

// HijackJSON is Hijack with a JSON body (exec start).
func (c *Client) HijackJSON(ctx context.Context, path string, body any) (net.Conn, *bufio.Reader, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, nil, err
	}
	return c.hijack(ctx, path, b)
}

func (c *Client) hijack(ctx context.Context, pathQuery string, body []byte) (net.Conn, *bufio.Reader, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return nil, nil, c.connError(err)
	}
	ctype := ""
	if body != nil {
		ctype = "Content-Type: application/json\r\n"
	}
	fmt.Fprintf(conn, "POST /v%s%s HTTP/1.1\r\nHost: flick\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n%sContent-Length: %d\r\n\r\n%s",
		dockerapi.APIVersion, pathQuery, ctype, len(body), body)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode != http.StatusOK {
		defer conn.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e struct{ Message string }
		text := strings.TrimSpace(string(msg))
		if json.Unmarshal(msg, &e) == nil && e.Message != "" {
			text = e.Message
		}
		return nil, nil, errdefs.New(dockerapi.ClassOfStatus(resp.StatusCode), errors.New(text))
	}
	return conn, br, nil
}
