package upstream

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseDestination(t *testing.T) {
	good := []struct {
		raw  string
		want Destination
	}{
		{"mqtt://broker.lan", Destination{URL: "mqtt://broker.lan:1883"}},
		{"mqtts://u:p%40ss@broker.lan:8884/fleet/{hub}/{topic}?qos=2&version=3&client_id=c1&ca=/ca.pem&cert=/c.pem&key=/k.pem",
			Destination{URL: "mqtts://broker.lan:8884/fleet/{hub}/{topic}", Username: "u", Password: "p@ss", QoS: 2, Version: 3,
				ClientID: "c1", CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem"}},
		{"mqtt://h/x?qos=0&version=5", Destination{URL: "mqtt://h:1883/x", QoS: QoSAtMostOnce, Version: 5}},
		{"nats://h/fleet.{hub}", Destination{URL: "nats://h:4222/fleet.{hub}"}},
		{"nats+tls://tok@h:4443?creds=", Destination{URL: "nats+tls://h:4443", Username: "tok"}},
		{"nats://h?creds=/x.creds", Destination{URL: "nats://h:4222", CredsFile: "/x.creds"}},
		{"MQTT://[::1]:1884/a", Destination{URL: "mqtt://[::1]:1884/a"}},
	}
	for _, g := range good {
		d, err := ParseDestination(g.raw)
		if err != nil {
			t.Errorf("%s: %v", g.raw, err)
			continue
		}
		if d != g.want {
			t.Errorf("%s:\n got %+v\nwant %+v", g.raw, d, g.want)
		}
		// The canonical URL parses to the same destination.
		if _, err := d.resolve(); err != nil {
			t.Errorf("%s: resolve: %v", g.raw, err)
		}
	}
	bad := []struct{ raw, msg string }{
		{"", "empty"},
		{"broker.lan:1883", "scheme"},
		{"http://h/x", `scheme "http"`},
		{"mqtt:h", "no host"},
		{"mqtt:///x", "no host"},
		{"mqtt://h:0", "port"},
		{"mqtt://h:99999", "port"},
		{"mqtt://h:x", ""},
		{"mqtt://h:/x", "empty port"},
		{"mqtt://h/a/+/b", "wildcard"},
		{"mqtt://h/a/#", "wildcard"},
		{"mqtt://h/{site}/{topic}", "only {hub} and {topic}"},
		{"mqtt://h/{topic", "only {hub} and {topic}"},
		{"nats://h/a.*.b", "wildcard"},
		{"nats://h/a/>", "wildcard"},
		{"nats://h/a%20b", "white space"},
		{"mqtt://h?qos=3", "qos"},
		{"mqtt://h?version=4.0", "version"},
		{"mqtt://h?bogus=1", "unknown query parameter"},
		{"mqtt://h?qos=1&qos=2", "2 times"},
		{"mqtt://h?ca=/ca.pem", "mqtts://"},
		{"mqtts://h?cert=/c.pem", "both cert and key"},
		{"mqtt://h?creds=/c", "NATS"},
		{"nats://h?qos=1", "MQTT settings"},
		{"nats://u:p@h?nkey=/k", "one of"},
		{"mqtt://:secret@h", "password without a user"},
	}
	for _, b := range bad {
		_, err := ParseDestination(b.raw)
		if err == nil {
			t.Errorf("%q: no error", b.raw)
			continue
		}
		if !strings.Contains(err.Error(), b.msg) {
			t.Errorf("%q: error %q does not mention %q", b.raw, err, b.msg)
		}
	}
	// Passwords do not leak into errors.
	if _, err := ParseDestination("mqtt://u:hunter2@h?bogus=1"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("password in error: %v", err)
	}
}

func TestTarget(t *testing.T) {
	cases := []struct {
		url, topic, want, err string
	}{
		{"mqtt://h", "sensors/t1", "sensors/t1", ""},
		{"mqtt://h/", "sensors/t1", "sensors/t1", ""},
		{"mqtt://h/fleet/{hub}", "sensors/t1", "fleet/hub-1/sensors/t1", ""},
		{"mqtt://h/fleet/{hub}/", "sensors/t1", "fleet/hub-1/sensors/t1", ""},
		{"mqtt://h/fleet/{hub}/{topic}/raw", "sensors/t1", "fleet/hub-1/sensors/t1/raw", ""},
		{"mqtt://h/{topic}", "a//b", "a//b", ""},
		{"mqtt://h", "a/+/b", "", "wildcard"},
		{"mqtt://h", "a/#", "", "wildcard"},
		{"mqtt://h", "", "", "empty"},
		{"mqtt://h", "$SYS/x", "", "belong to the broker"},
		{"mqtt://h", "a\x00b", "", "UTF-8"},
		{"nats://h", "sensors/t1", "sensors.t1", ""},
		{"nats://h/fleet/{hub}/{topic}", "sensors/t1", "fleet.hub-1.sensors.t1", ""},
		{"nats://h/fleet.{hub}", "sensors/t1", "fleet.hub-1.sensors.t1", ""},
		{"nats://h/fleet.{hub}.{topic}", "a.b/c", "fleet.hub-1.a.b.c", ""},
		{"nats://h", "a//b", "", "empty token"},
		{"nats://h", "/a", "", "empty token"},
		{"nats://h", "a/", "", "empty token"},
		{"nats://h", "a/*/b", "", "wildcard"},
		{"nats://h", "a/>", "", "wildcard"},
		{"nats://h", "a b", "", "white space"},
	}
	for _, c := range cases {
		got, err := Destination{URL: c.url}.Target(c.topic, "hub-1")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s %q: got %q, %v; want error with %q", c.url, c.topic, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s %q: got %q, %v; want %q", c.url, c.topic, got, err, c.want)
		}
	}
	// A hub id cannot smuggle a wildcard in.
	if _, err := (Destination{URL: "mqtt://h/{hub}/{topic}"}).Target("t", "+"); err == nil {
		t.Error("wildcard in hub id accepted")
	}
}

func TestBackoff(t *testing.T) {
	min, max := 200*time.Millisecond, 30*time.Second
	for n := 1; n <= 80; n++ {
		want := min << (n - 1)
		if n > 20 || want > max {
			want = max
		}
		for i := 0; i < 50; i++ {
			d := backoff(n, min, max)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
	// Jittered: not all the same.
	seen := map[time.Duration]bool{}
	for i := 0; i < 20; i++ {
		seen[backoff(5, min, max)] = true
	}
	if len(seen) < 5 {
		t.Errorf("backoff not jittered: %v", seen)
	}
}

func TestErrorClasses(t *testing.T) {
	p := permanent("not authorized", 0x87, nil).with("mqtt://h:1883", "m1")
	if !errors.Is(p, ErrPermanent) || errors.Is(p, ErrRetryable) {
		t.Errorf("permanent error misclassified: %v", p)
	}
	if s := p.Error(); !strings.Contains(s, "permanent: not authorized (reason code 0x87) [message m1]") {
		t.Errorf("message: %s", s)
	}
	r := retryable("timeout", context.DeadlineExceeded)
	if errors.Is(r, ErrPermanent) || !errors.Is(r, ErrRetryable) || !errors.Is(r, context.DeadlineExceeded) {
		t.Errorf("retryable error misclassified: %v", r)
	}
	if e := classifyNetErr(context.DeadlineExceeded); e.Permanent {
		t.Error("timeout is permanent")
	}
}

func TestDialValidates(t *testing.T) {
	ctx := context.Background()
	if _, err := Dial(ctx, Destination{URL: "ftp://h"}, "hub", Options{}); err == nil {
		t.Error("bad scheme accepted")
	}
	if _, err := Dial(ctx, Destination{URL: "mqtts://127.0.0.1:1", CAFile: "/nonexistent/ca.pem"}, "hub", Options{}); err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Errorf("missing CA file: %v", err)
	}
	if _, err := Dial(ctx, Destination{URL: "nats://127.0.0.1:1", NKeyFile: "/nonexistent/seed"}, "hub", Options{}); err == nil {
		t.Error("missing nkey file accepted")
	}
}

// A sender for a port where nothing listens: Dial succeeds, Send fails
// fast and Retryable, and the background loop keeps trying with back-off.
func TestSendWhileDown(t *testing.T) {
	for _, url := range []string{"mqtt://127.0.0.1:%d/x", "mqtt://127.0.0.1:%d/x?version=3", "nats://127.0.0.1:%d/x"} {
		port := freePort(t)
		d, err := ParseDestination(strings.Replace(url, "%d", strconv.Itoa(port), 1))
		if err != nil {
			t.Fatal(err)
		}
		s, err := Dial(testCtx(t, 5*time.Second), d, "hub-1", Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("%s: Dial: %v", d.URL, err)
		}
		start := time.Now()
		n, err := s.Send(testCtx(t, 5*time.Second), msgs("m", 3, "a/b"))
		if n != 0 || !errors.Is(err, ErrRetryable) || time.Since(start) > 500*time.Millisecond {
			t.Errorf("%s: Send = %d, %v after %v; want 0, retryable, fast", d.URL, n, err, time.Since(start))
		}
		waitFor(t, 5*time.Second, "connection attempts", func() bool { return s.State().ConnectFailures >= 3 })
		st := s.State()
		if st.Connected || st.LastError == nil || st.Failed != 1 {
			t.Errorf("%s: state %+v", d.URL, st)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if _, err := s.Send(context.Background(), msgs("m", 1, "a")); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrRetryable) {
			t.Errorf("%s: Send after Close: %v", d.URL, err)
		}
	}
}

func TestFillTemplate(t *testing.T) {
	for _, c := range []struct{ tmpl, hub, topic, want string }{
		{"fleet/{hub}/{topic}", "h7", "a/b", "fleet/h7/a/b"},
		{"{topic}", "h", "x", "x"},
		{"{hub}", "h", "x", "h"},
		{"a/{top}/{hub", "h", "x", "a/{top}/{hub"},
		{"{hub}/{topic}/{hub}", "{topic}", "{hub}", "{topic}/{hub}/{topic}"}, // what is put in is not searched again
		{"", "h", "x", ""},
	} {
		if got := fillTemplate(c.tmpl, c.hub, c.topic); got != c.want {
			t.Errorf("fillTemplate(%q, %q, %q) = %q, want %q", c.tmpl, c.hub, c.topic, got, c.want)
		}
	}
}
