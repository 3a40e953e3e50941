package upstream

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// fleetStream creates the stream FLEET over fleet.> with a one-minute
// duplicate window.
func fleetStream(t *testing.T, ctx context.Context, n *natsServer, opts ...nats.Option) jetstream.Stream {
	t.Helper()
	nc, err := nats.Connect(n.url(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FLEET", Subjects: []string{"fleet.>"},
		Storage: jetstream.FileStorage, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func streamMsgs(t *testing.T, ctx context.Context, st jetstream.Stream) uint64 {
	t.Helper()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// A subject of a stream: Send returns after the PubAcks, and sending the
// same messages again stores nothing (JetStream de-duplicates on
// Nats-Msg-Id).
func TestNATSJetStream(t *testing.T) {
	n := startNATS(t, "")
	ctx := testCtx(t, 30*time.Second)
	st := fleetStream(t, ctx, n)
	s := dialT(t, Destination{URL: n.url() + "/fleet/{hub}/{topic}"}, fastOpts())
	connected(t, s)
	batch := msgs("m", 50, "sensors/t1")
	if k, err := s.Send(ctx, batch); k != 50 || err != nil {
		t.Fatalf("Send = %d, %v", k, err)
	}
	if got := streamMsgs(t, ctx, st); got != 50 {
		t.Fatalf("stream has %d messages, want 50", got)
	}
	// A retry of the whole batch (as after a lost acknowledgement).
	if k, err := s.Send(ctx, batch); k != 50 || err != nil {
		t.Fatalf("Send again = %d, %v", k, err)
	}
	if got := streamMsgs(t, ctx, st); got != 50 {
		t.Fatalf("stream has %d messages after the retry, want 50 (de-duplicated)", got)
	}
	if state := s.State(); state.Duplicates != 50 || state.Acked != 100 || state.Sent != 100 {
		t.Errorf("state %+v", state)
	}
	for seq := uint64(1); seq <= 50; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		want := batch[seq-1]
		if m.Subject != "fleet.hub-1.sensors.t1" || string(m.Data) != string(want.Payload) ||
			m.Header.Get(MsgIDHeader) != want.ID || m.Header.Get("seq") != want.Attrs["seq"] {
			t.Fatalf("stored message %d: %s %q %v; want %+v", seq, m.Subject, m.Data, m.Header, want)
		}
	}
}

// Subjects outside any stream are published plainly (acknowledged by a
// flush), in order with the stream ones of the same batch.
func TestNATSPlainAndMixed(t *testing.T) {
	n := startNATS(t, "")
	ctx := testCtx(t, 30*time.Second)
	st := fleetStream(t, ctx, n)
	nc, err := nats.Connect(n.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	s := dialT(t, Destination{URL: n.url()}, fastOpts())
	connected(t, s)
	var batch []Message
	for i := 0; i < 40; i++ {
		topic := "open/t"
		if i%3 == 0 {
			topic = "fleet/t"
		}
		batch = append(batch, Message{ID: fmt.Sprintf("m%d", i), Topic: topic, Payload: []byte(fmt.Sprint(i)), Attrs: map[string]string{"k": "v"}})
	}
	if k, err := s.Send(ctx, batch); k != 40 || err != nil {
		t.Fatalf("Send = %d, %v", k, err)
	}
	for i, want := range batch {
		var m *nats.Msg
		for {
			m, err = sub.NextMsgWithContext(ctx)
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if !strings.HasPrefix(m.Subject, "$JS.") && !strings.HasPrefix(m.Subject, "_INBOX.") {
				break
			}
		}
		wantSubj := strings.ReplaceAll(want.Topic, "/", ".")
		if m.Subject != wantSubj || string(m.Data) != string(want.Payload) || m.Header.Get(MsgIDHeader) != want.ID || m.Header.Get("k") != "v" {
			t.Fatalf("message %d: %s %q %v; want %s %q", i, m.Subject, m.Data, m.Header, wantSubj, want.Payload)
		}
	}
	if got := streamMsgs(t, ctx, st); got != 14 {
		t.Errorf("stream has %d messages, want 14", got)
	}
}

// Wrong credentials are Permanent at once; the right ones work.
func TestNATSAuthFailure(t *testing.T) {
	n := startNATS(t, `authorization { user: alice, password: secret }`)
	ctx := testCtx(t, 20*time.Second)
	o := fastOpts()
	o.MaxBackoff = 2 * time.Second
	s := dialT(t, Destination{URL: n.url() + "/fleet", Username: "alice", Password: "wrong"}, o)
	k, err := s.Send(ctx, msgs("m", 2, "x"))
	if k != 0 || !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "not authorized") {
		t.Fatalf("Send = %d, %v; want permanent, not authorized", k, err)
	}
	t.Log(err)
	time.Sleep(500 * time.Millisecond)
	if st := s.State(); st.Connected || st.ConnectFailures == 0 || st.ConnectFailures > 2 || st.Refused != 1 {
		t.Errorf("state %+v", st)
	}
	fleetStream(t, ctx, n, nats.UserInfo("alice", "secret"))
	ok := dialT(t, Destination{URL: n.url() + "/fleet", Username: "alice", Password: "secret"}, fastOpts())
	connected(t, ok)
	if k, err := ok.Send(ctx, msgs("m", 2, "x")); k != 2 || err != nil {
		t.Fatalf("Send = %d, %v", k, err)
	}
}

// A subject the user may not publish to: Permanent for that message, the
// ones before it acknowledged; payloads over max_payload are Permanent.
func TestNATSRefusals(t *testing.T) {
	n := startNATS(t, `max_payload: 1024
authorization {
  users = [
    {user: alice, password: secret, permissions: {publish: {allow: ["open.>", "fleet.>", "$JS.API.>"]}, subscribe: {allow: ["_INBOX.>"]}}}
  ]
}`)
	ctx := testCtx(t, 20*time.Second)
	fleetStream(t, ctx, n, nats.UserInfo("alice", "secret"))
	s := dialT(t, Destination{URL: n.url(), Username: "alice", Password: "secret"}, fastOpts())
	connected(t, s)
	batch := []Message{
		{ID: "a", Topic: "open/1", Payload: []byte("1")},
		{ID: "b", Topic: "closed/2", Payload: []byte("2")},
		{ID: "c", Topic: "open/3", Payload: []byte("3")},
	}
	k, err := s.Send(ctx, batch)
	var e *Error
	if k != 1 || !errors.Is(err, ErrPermanent) || !errors.As(err, &e) || e.MsgID != "b" || e.Reason != "not authorized" {
		t.Fatalf("Send = %d, %v; want 1, permanent for b", k, err)
	}
	t.Log(err)
	if k, err := s.Send(ctx, batch[2:]); k != 1 || err != nil {
		t.Fatalf("Send = %d, %v", k, err)
	}
	for _, topic := range []string{"open/big", "fleet/big"} {
		k, err = s.Send(ctx, []Message{{ID: "big", Topic: topic, Payload: make([]byte, 2000)}, batch[0]})
		if k != 0 || !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "payload too large") {
			t.Fatalf("%s: Send = %d, %v; want permanent payload too large", topic, k, err)
		}
		t.Log(err)
	}
	// Bad subjects never reach the server.
	if k, err := s.Send(ctx, []Message{batch[0], {ID: "w", Topic: "open/*"}}); k != 1 || !errors.Is(err, ErrPermanent) {
		t.Fatalf("Send = %d, %v", k, err)
	}
	if st := s.State(); st.Refused != 4 || !st.Connected || st.Connects != 1 {
		t.Errorf("state %+v", st)
	}
}

// nats-server goes away and comes back on the same port: Send is
// Retryable meanwhile, nats.go reconnects by itself with our back-off, and
// JetStream publishes work again.
func TestNATSReconnect(t *testing.T) {
	n := startNATS(t, "")
	ctx := testCtx(t, 60*time.Second)
	st := fleetStream(t, ctx, n)
	s := dialT(t, Destination{URL: n.url() + "/fleet/{hub}/{topic}"}, fastOpts())
	connected(t, s)
	if k, err := s.Send(ctx, msgs("a", 5, "t")); k != 5 || err != nil {
		t.Fatalf("Send = %d, %v", k, err)
	}
	for round := 0; round < 2; round++ {
		n.stop()
		waitFor(t, 10*time.Second, "disconnect", func() bool { return !s.State().Connected })
		up := s.NextConnect()
		start := time.Now()
		k, err := s.Send(ctx, msgs("b", 5, "t"))
		if k != 0 || !errors.Is(err, ErrRetryable) || time.Since(start) > time.Second {
			t.Fatalf("Send while down = %d, %v after %v", k, err, time.Since(start))
		}
		n.start()
		select {
		case <-up:
		case <-ctx.Done():
			t.Fatal("NextConnect not closed by the reconnection")
		}
		connected(t, s)
		waitFor(t, 20*time.Second, "send after restart", func() bool {
			k, err = s.Send(ctx, msgs(fmt.Sprintf("c%d", round), 5, "t"))
			if err != nil && !errors.Is(err, ErrRetryable) {
				t.Fatalf("Send after restart: %v", err)
			}
			return k == 5
		})
	}
	if got := streamMsgs(t, ctx, st); got != 15 {
		t.Errorf("stream has %d messages, want 15", got)
	}
	if state := s.State(); state.Reconnects != 2 || state.Failed < 2 {
		t.Errorf("state %+v", state)
	}
}

// TLS with client certificates (verify: true), and nkey authentication.
func TestNATSTLSAndNKey(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	seedFile := filepath.Join(dir, "user.nk")
	write(t, seedFile, string(seed))
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherFile := filepath.Join(dir, "other.nk")
	write(t, otherFile, string(otherSeed))

	n := startNATS(t, fmt.Sprintf(`tls {
  cert_file: %q
  key_file: %q
  ca_file: %q
  verify: true
  timeout: 2
}
authorization { users = [ { nkey: %q } ] }`, p.serverCert, p.serverKey, p.ca, pub))
	ctx := testCtx(t, 30*time.Second)
	url := fmt.Sprintf("nats+tls://127.0.0.1:%d/open", n.port)

	s := dialT(t, Destination{URL: url, CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey, NKeyFile: seedFile}, fastOpts())
	connected(t, s)
	if k, err := s.Send(ctx, msgs("m", 3, "t")); k != 3 || err != nil {
		t.Fatalf("Send = %d, %v", k, err)
	}
	for _, bad := range []struct {
		name   string
		d      Destination
		reason string
	}{
		{"no client certificate", Destination{URL: url, CAFile: p.ca, NKeyFile: seedFile}, "TLS"},
		{"untrusted server", Destination{URL: url, CAFile: p.otherCA, CertFile: p.clientCert, KeyFile: p.clientKey, NKeyFile: seedFile}, "TLS: server certificate not trusted"},
		{"unknown nkey", Destination{URL: url, CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey, NKeyFile: otherFile}, "not authorized"},
	} {
		s := dialT(t, bad.d, fastOpts())
		var err error
		waitFor(t, 10*time.Second, bad.name+": permanent error", func() bool {
			_, err = s.Send(ctx, msgs("x", 1, "t"))
			return errors.Is(err, ErrPermanent)
		})
		if !strings.Contains(err.Error(), bad.reason) {
			t.Errorf("%s: %v; want %q", bad.name, err, bad.reason)
		}
		t.Logf("%s: %v", bad.name, err)
	}
}
