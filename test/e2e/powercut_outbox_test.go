package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/flick-edge/flick/internal/mqtttest"
)

// TestPowerCutDuringOutbox cuts power while devices publish through a route
// to an upstream broker (a real mosquitto). Each event is published with QoS
// 1, one after the other; an event counts as accepted when Flick acknowledged
// it (PUBACK), which it does only once the event is durable in the outbox.
// After the reboot every accepted event must reach the upstream (delivered
// before the cut, or from the outbox after it), the outbox must be readable
// (the daemon starts, the route lists), and the store must check clean.
// The cut falls on appends, on deliveries and on acknowledgement records,
// which run concurrently.
func TestPowerCutDuringOutbox(t *testing.T) {
	requireCutfs(t)
	up := startMosquitto(t)
	const events = 40
	cycles := 0
	cycle := func(t *testing.T, n uint64) (ops uint64, accepted int) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// Every cycle has its own topic, payloads and subscriber: random cut
		// points repeat, and a cycle must not resume (or see) the session
		// or the messages of an earlier one on the same upstream.
		cycles++
		run := fmt.Sprintf("run%d-%d", n, cycles)
		// The cloud side, subscribed before anything is sent and connected
		// throughout, collecting what arrives.
		var mu sync.Mutex
		got := map[string]bool{}
		sub, err := mqtttest.Connect(ctx, up.addr(), mqtttest.Options{ClientID: "cloud-" + run, Buffer: 1 << 12})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		if err := sub.Subscribe(ctx, 1, "fleet/"+run+"/#"); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				select {
				case m := <-sub.Messages:
					mu.Lock()
					got[string(m.Payload)] = true
					mu.Unlock()
				case <-ctx.Done():
					return
				}
			}
		}()

		r := newCutRig(t)
		d := r.d
		d.mustFlick(t, "route", "add", "cloud", "--from", "sensors/#", "--to", "mqtt://"+up.addr()+"/fleet/"+run+"/{topic}")
		r.arm(n)
		dev, err := mqtttest.Connect(ctx, d.info(t).MQTT[0], mqtttest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var acked []string
		for i := 0; i < events; i++ {
			payload := fmt.Sprintf("%s:%d", run, i)
			pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := dev.Publish(pctx, &paho.Publish{Topic: "sensors/t", QoS: 1, Payload: []byte(payload)})
			pcancel()
			if err != nil {
				break // the power went: nothing after this was accepted
			}
			acked = append(acked, payload)
		}
		dev.Close()
		if n == 0 {
			// Let the backlog drain before the calibration cut, so the
			// count covers deliveries and acknowledgements too.
			eventually(30*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= len(acked) })
		}
		r.reboot()
		if !strings.Contains(d.mustFlick(t, "route", "ls").Stdout, "cloud") {
			t.Errorf("N=%d: the route is gone after the cut", n)
		}
		ok := eventually(60*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, p := range acked {
				if !got[p] {
					return false
				}
			}
			return true
		})
		if !ok {
			mu.Lock()
			var missing []string
			for _, p := range acked {
				if !got[p] {
					missing = append(missing, p)
				}
			}
			received := len(got)
			mu.Unlock()
			t.Errorf("N=%d: %d of %d accepted events never reached the upstream: %v\nsubscriber dropped %d, received %d\nroute: %s\ndaemon log before the cut:\n%s\ndaemon log after:\n%s",
				n, len(missing), len(acked), missing, sub.Dropped.Load(), received, d.flick(t, "route", "ls", "--json").Stdout,
				tailString(r.preLog, 4000), tailString(d.Log(), 4000))
		}
		if r := d.flick(t, "system", "check"); r.Code != 0 {
			t.Errorf("N=%d: system check: %s", n, r)
		}
		d.Stop()
		return r.ops, len(acked)
	}
	var total uint64
	t.Run("uncut", func(t *testing.T) {
		var acc int
		total, acc = cycle(t, 0)
		if acc != events {
			t.Fatalf("uncut run: %d of %d events accepted", acc, events)
		}
	})
	if total == 0 {
		t.Fatal("the workload made no filesystem operations")
	}
	var summary []string
	campaign(t, "outbox traffic", total, 10, func(t *testing.T, n uint64) {
		_, acc := cycle(t, n)
		summary = append(summary, fmt.Sprintf("N=%d accepted=%d", n, acc))
	})
	t.Logf("%d events through a route: %s", events, strings.Join(summary, ", "))
}

// eventually polls cond every 50 ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}
