package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

var (
	// ErrPermanent matches (errors.Is) errors for which sending the same
	// message again cannot succeed: the upstream refused it.
	ErrPermanent = errors.New("refused by upstream")
	// ErrRetryable matches errors after which sending again later may
	// succeed: not connected, connection lost, timeout.
	ErrRetryable = errors.New("upstream unavailable")
	// ErrClosed is wrapped by the (Retryable) error of Send after Close.
	ErrClosed = errors.New("sender closed")
)

// Error is the error type of Send and State.LastError.
type Error struct {
	URL       string // the destination
	Permanent bool
	Reason    string // short, for people and metrics labels: "not authorized", "packet too large", ...
	Code      int    // protocol reason code (MQTT 5 reason code, MQTT 3 CONNACK return code, JetStream error code); 0 if none
	MsgID     string // the message concerned, if any
	Err       error  // underlying error, if any

	lost bool // the connection ended (MQTT: the message in flight may be to blame)
}

func (e *Error) Error() string {
	class := "retryable"
	if e.Permanent {
		class = "permanent"
	}
	s := fmt.Sprintf("upstream %s: %s: %s", e.URL, class, e.Reason)
	if e.Code != 0 {
		s += fmt.Sprintf(" (reason code 0x%02x)", e.Code)
	}
	if e.MsgID != "" {
		s += fmt.Sprintf(" [message %s]", e.MsgID)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrPermanent) and errors.Is(err, ErrRetryable) work.
func (e *Error) Is(target error) bool {
	return (target == ErrPermanent && e.Permanent) || (target == ErrRetryable && !e.Permanent)
}

func (e *Error) Unwrap() error { return e.Err }

func permanent(reason string, code int, err error) *Error {
	return &Error{Permanent: true, Reason: reason, Code: code, Err: bare(err)}
}

func retryable(reason string, err error) *Error {
	return &Error{Reason: reason, Err: bare(err)}
}

// bare keeps *Error out of an *Error's chain, where its class would
// contradict the outer one under errors.Is.
func bare(err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	if e.Code != 0 {
		return fmt.Errorf("%s (reason code 0x%02x): %w", e.Reason, e.Code, e.Err)
	}
	return fmt.Errorf("%s: %w", e.Reason, e.Err)
}

// with returns a copy of e naming the message and the destination.
func (e *Error) with(url, msgID string) *Error {
	c := *e
	c.URL = url
	if msgID != "" {
		c.MsgID = msgID
	}
	return &c
}

// classifyNetErr classifies an error of dialing, TLS or a connection.
func classifyNetErr(err error) *Error {
	var (
		e         *Error
		verr      *tls.CertificateVerificationError
		uaErr     x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invErr    x509.CertificateInvalidError
		opErr     *net.OpError
		recHeader tls.RecordHeaderError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return e
	case errors.As(err, &verr), errors.As(err, &uaErr), errors.As(err, &hostErr), errors.As(err, &invErr):
		return permanent("TLS: server certificate not trusted", 0, err)
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		// A TLS alert from the server: it refused our certificate (or its
		// absence), the protocol version or the cipher suites.
		return permanent("TLS: refused by server", 0, err)
	case errors.As(err, &recHeader):
		return permanent("TLS: server does not speak TLS", 0, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return retryable("timeout", err)
	case errors.Is(err, context.Canceled):
		return retryable("canceled", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return retryable("timeout", err)
	}
	return retryable("connection failed", err)
}
