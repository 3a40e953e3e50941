package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/flick-edge/flick/internal/mqtttest"
)

// stormEvents is how many events the storm sends (FLICK_STORM_EVENTS to change).
func stormEvents() int {
	if n, err := strconv.Atoi(os.Getenv("FLICK_STORM_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// peakRSS is the daemon's high-water resident set, in bytes.
func (d *Daemon) peakRSS(t *testing.T) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestEventStorm fires events as fast as one client can send them at a
// function with a small queue: every event must be processed or dropped by
// the stated policy, each decision counted, and the daemon's memory stay
// bounded.
func TestEventStorm(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t, withArgs("--log-level=info"))
	d.mustFlick(t, "fn", "deploy", "sink", "--wasm", module(t, "echo"), "--on", "mqtt:storm/+", "--concurrency", "2", "--queue", "1000", "--overflow", "drop-oldest")
	n := stormEvents()
	c := mqttConnect(t, d)
	payload := []byte(`{"sensor":"t1","value":21.5}`)
	start := time.Now()
	for i := range n {
		if _, err := c.Publish(tctx(t), &paho.Publish{Topic: "storm/" + strconv.Itoa(i%8), QoS: 0, Payload: payload}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	sent := time.Since(start)
	var ok, dropped float64
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		ok = d.metric(t, `flick_function_invocations_total{function="sink",outcome="ok"}`)
		dropped = d.metric(t, `flick_function_dropped_total{function="sink"}`)
		if int(ok+dropped) >= n {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	rss := d.peakRSS(t)
	t.Logf("%d events sent in %v (%.0f/s); processed %v, dropped %v; daemon peak RSS %d MiB", n, sent.Round(time.Millisecond), float64(n)/sent.Seconds(), ok, dropped, rss>>20)
	if received := d.metric(t, "flick_mqtt_received_total"); int(received) != n {
		t.Fatalf("broker received %v of %d", received, n)
	}
	if int(ok+dropped) != n {
		t.Fatalf("processed %v + dropped %v != %d sent", ok, dropped, n)
	}
	if errs := d.metric(t, `flick_function_errors_total{function="sink"}`); errs != 0 {
		t.Fatalf("%v errors", errs)
	}
	if rss > 256<<20 {
		t.Fatalf("daemon peak RSS %d MiB under a %d-event storm: memory is not bounded", rss>>20, n)
	}
	// Still alive and serving.
	if out := d.mustFlick(t, "fn", "invoke", "sink", "still-alive").Stdout; out != "STILL-ALIVE" {
		t.Fatal(out)
	}
}

// TestOverloadRejectsBackToClient: with overflow reject, MQTT 5 senders of
// QoS 1 events that find the queue full get PUBACK 0x97, and every refusal
// is counted.
func TestOverloadRejectsBackToClient(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t, withArgs("--log-level=info"))
	d.mustFlick(t, "fn", "deploy", "slow", "--wasm", module(t, "loop"), "--on", "mqtt:slow", "--timeout", "20ms", "--concurrency", "1", "--queue", "2")
	const clients, each = 16, 5
	var accepted, refused atomic.Int64
	var wg sync.WaitGroup
	addr := d.info(t).MQTT[0]
	for range clients {
		c, err := mqtttest.Connect(tctx(t), addr, mqtttest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				rc, err := c.Publish(ctx, &paho.Publish{Topic: "slow", QoS: 1, Payload: []byte("x")})
				cancel()
				switch {
				case rc == 0x97:
					refused.Add(1)
				case err == nil && rc == 0:
					accepted.Add(1)
				default:
					t.Errorf("publish: rc 0x%02x %v", rc, err)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("accepted %d, refused %d", accepted.Load(), refused.Load())
	if refused.Load() == 0 || accepted.Load() == 0 {
		t.Fatalf("accepted %d refused %d: want both", accepted.Load(), refused.Load())
	}
	if v := d.metric(t, `flick_function_rejected_total{function="slow"}`); int64(v) != refused.Load() {
		t.Fatalf("rejected metric %v != %d refusals seen by clients", v, refused.Load())
	}
	if v := d.metric(t, `flick_function_timeouts_total{function="slow"}`); int64(v) != accepted.Load() {
		t.Fatalf("timeouts %v != %d accepted events", v, accepted.Load())
	}
}
