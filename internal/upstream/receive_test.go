package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/flick-edge/flick/internal/mqtttest"
)

func TestParseSourceAndLocalTopic(t *testing.T) {
	b, f, err := ParseSource("mqtts://cloud.example:8883/fleet/{hub}/cmd/#")
	if err != nil || b != "mqtts://cloud.example:8883" || f != "fleet/{hub}/cmd/#" {
		t.Fatalf("%q %q %v", b, f, err)
	}
	for _, bad := range []string{"cloud:1883/x", "mqtt://cloud:1883", "mqtt://cloud:1883/", "nats://n:4222/a.>", "http://x/y", "mqtt://h?x=1/t", "mqtt://h:1/t/#?version=3"} {
		if _, _, err := ParseSource(bad); err == nil {
			t.Errorf("ParseSource(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"a/#/b", "a/b#", "a+/b", ""} {
		if checkFilter(bad) == nil {
			t.Errorf("filter %q accepted", bad)
		}
	}
	for _, c := range []struct{ filter, tmpl, topic, want string }{
		{"fleet/h7/cmd/#", "", "fleet/h7/cmd/light/on", "fleet/h7/cmd/light/on"},
		{"fleet/h7/cmd/#", "cmd/{topic}", "fleet/h7/cmd/light/on", "cmd/light/on"},
		{"fleet/h7/cmd/#", "cmd", "fleet/h7/cmd/light/on", "cmd/light/on"},
		{"fleet/+/cmd", "in/{hub}/{topic}", "fleet/x/cmd", "in/h7/x/cmd"},
		{"fleet/h7/cmd", "cmd/{topic}", "fleet/h7/cmd", "cmd"},
		{"fleet/h7/cmd", "cmd", "fleet/h7/cmd", "cmd"},
	} {
		if got := localTopic(c.filter, c.tmpl, "h7", c.topic); got != c.want {
			t.Errorf("localTopic(%q, %q, %q) = %q, want %q", c.filter, c.tmpl, c.topic, got, c.want)
		}
	}
}

// TestMQTTReceive: a subscription to a real mosquitto delivers in order and
// keeps its session: what is published while the hub is away, and what it
// was handling when it stopped (not acknowledged), arrives when it is back.
func TestMQTTReceive(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	port := freePort(t)
	startMosquittoOn(t, port)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	pub, err := mqtttest.Connect(ctx, addr, mqtttest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	send := func(topic, payload string) {
		t.Helper()
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload),
			Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: payload}}}}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan Delivery, 100)
	block := make(chan struct{})      // closed: stop blocking on "hold"
	holding := make(chan struct{}, 1) // "hold" is being delivered
	deliver := func(ctx context.Context, d Delivery) error {
		switch string(d.Payload) {
		case "bad":
			return errors.New("refused by the hub")
		case "hold":
			select {
			case holding <- struct{}{}:
			default:
			}
			select {
			case <-block:
			case <-ctx.Done():
				return ctx.Err() // stopped mid-delivery: not acknowledged
			}
		}
		got <- d
		return nil
	}
	src := Source{URL: "mqtt://" + addr + "/fleet/{hub}/cmd/#", ClientID: "flick-h7-cmds", Local: "cmd/{topic}"}
	open := func() Receiver {
		r, err := Receive(src, "h7", fastOpts(), deliver)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	seen := map[string]bool{}
	var next func(want string)
	next = func(want string) {
		t.Helper()
		select {
		case d := <-got:
			if string(d.Payload) == "probe" || seen[string(d.Payload)] && string(d.Payload) != want {
				// A late probe from the subscription wait, or a message
				// whose acknowledgement had not left when the hub stopped
				// (at least once): skip.
				next(want)
				return
			}
			seen[string(d.Payload)] = true
			if string(d.Payload) != want || d.Attrs["k"] != want || !strings.HasPrefix(d.Topic, "fleet/h7/cmd/") || d.Local != "cmd/"+strings.TrimPrefix(d.Topic, "fleet/h7/cmd/") {
				t.Fatalf("got %q on %s (%v), want %q", d.Payload, d.Topic, d.Attrs, want)
			}
		case <-ctx.Done():
			t.Fatalf("%q never arrived", want)
		}
	}
	r := open()
	// Subscribed once a probe gets through.
	waitFor(t, 20*time.Second, "subscription", func() bool {
		send("fleet/h7/cmd/probe", "probe")
		select {
		case <-got:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})
	for len(got) > 0 {
		<-got
	}
	send("fleet/other/cmd/x", "not for this hub")
	for i := range 5 {
		send(fmt.Sprintf("fleet/h7/cmd/c%d", i), fmt.Sprint(i))
	}
	send("fleet/h7/cmd/bad", "bad")
	send("fleet/h7/cmd/c5", "5")
	for i := range 6 {
		next(fmt.Sprint(i))
	}
	if st := r.State(); !st.Connected || st.Failed != 1 {
		t.Fatalf("state %+v", st)
	}
	// The hub goes away: what the cloud sends meanwhile waits in the
	// session; the message being handled when it stopped comes again.
	send("fleet/h7/cmd/h", "hold")
	select {
	case <-holding:
	case <-ctx.Done():
		t.Fatal("hold never delivered")
	}
	r.Close()
	send("fleet/h7/cmd/c6", "6")
	send("fleet/h7/cmd/c7", "7")
	close(block)
	r = open()
	defer r.Close()
	next("hold")
	next("6")
	next("7")
}
