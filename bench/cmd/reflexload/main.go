// Command reflexload drives Flick's broker from outside the daemon, as
// devices would: N MQTT 5 clients publish QoS 1 events to IN/<client>, one
// client subscribes to OUT/#, and each event's latency is the time from
// publishing it to receiving its result. It prints p50/p99/max and the
// sustained rate, as text or one JSON object.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/flick-edge/flick/internal/mqtttest"
)

type report struct {
	Label     string  `json:"label"`
	Events    int     `json:"events"`
	Received  int     `json:"received"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"eventsPerSecond"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	MaxUs     float64 `json:"max_us"`
	Refused   int64   `json:"refused"`
}

func main() {
	addr := flag.String("broker", "127.0.0.1:1883", "broker address")
	in := flag.String("in", "bench/in", "publish to IN/<client>")
	out := flag.String("out", "bench/out", "results arrive on OUT/#")
	clients := flag.Int("clients", 8, "publishing connections")
	events := flag.Int("events", 20000, "events in total (bounded)")
	warmup := flag.Int("warmup", 500, "events sent first and not measured")
	size := flag.Int("payload", 64, "payload bytes (at least the id)")
	label := flag.String("label", "run", "name printed with the figures")
	jsonOut := flag.Bool("json", false, "print one JSON object")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up after this long")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rep, err := run(ctx, *addr, *in, *out, *clients, *events, *warmup, *size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reflexload:", err)
		os.Exit(1)
	}
	rep.Label = *label
	if *jsonOut {
		json.NewEncoder(os.Stdout).Encode(rep)
		return
	}
	fmt.Printf("%s: %d events, %.0f/s, p50 %.0fµs p99 %.0fµs max %.0fµs, refused %d\n", rep.Label, rep.Received, rep.PerSecond, rep.P50us, rep.P99us, rep.MaxUs, rep.Refused)
}

func run(ctx context.Context, addr, in, out string, clients, events, warmup, size int) (report, error) {
	total := warmup + events
	sent := make([]int64, total) // unix ns when event i was published
	got := make([]int64, total)  // unix ns when its result arrived
	var received atomic.Int64
	sub, err := mqtttest.Connect(ctx, addr, mqtttest.Options{Buffer: 1 << 16})
	if err != nil {
		return report{}, err
	}
	defer sub.Close()
	if err := sub.Subscribe(ctx, 1, out+"/#"); err != nil {
		return report{}, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for received.Load() < int64(total) {
			m, err := sub.Next(ctx)
			if err != nil {
				return
			}
			now := time.Now().UnixNano()
			var ev struct{ ID int }
			if json.Unmarshal(m.Payload, &ev) == nil && ev.ID >= 0 && ev.ID < total && got[ev.ID] == 0 {
				got[ev.ID] = now
				received.Add(1)
			}
		}
	}()
	pad := ""
	if size > 24 {
		pad = strings.Repeat("x", size-24)
	}
	var next atomic.Int64
	var refused atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, clients)
	pubs := make([]*mqtttest.Client, clients)
	for i := range clients {
		c, err := mqtttest.Connect(ctx, addr, mqtttest.Options{})
		if err != nil {
			return report{}, err
		}
		defer c.Close()
		pubs[i] = c
	}
	send := func(limit int64) {
		for i, c := range pubs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				topic := in + "/" + strconv.Itoa(i)
				for {
					id := next.Load()
					if id >= limit {
						return
					}
					if !next.CompareAndSwap(id, id+1) {
						continue
					}
					p := []byte(`{"id":` + strconv.FormatInt(id, 10) + `,"pad":"` + pad + `"}`)
					sent[id] = time.Now().UnixNano()
					rc, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: p})
					if err != nil {
						errc <- err
						return
					}
					if rc == 0x97 {
						refused.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}
	send(int64(warmup))
	for received.Load() < int64(warmup)-refused.Load() && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	send(int64(total))
	select {
	case err := <-errc:
		return report{}, err
	default:
	}
	for received.Load() < int64(total)-refused.Load() && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if ctx.Err() != nil {
		return report{}, fmt.Errorf("timed out with %d of %d results", received.Load(), total)
	}
	var last int64
	lat := make([]float64, 0, events)
	for i := warmup; i < total; i++ {
		if got[i] == 0 {
			continue
		}
		lat = append(lat, float64(got[i]-sent[i])/1e3)
		last = max(last, got[i])
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		return report{}, fmt.Errorf("no results measured")
	}
	secs := float64(last-start.UnixNano()) / 1e9
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return report{Events: events, Received: len(lat), Seconds: secs, PerSecond: float64(len(lat)) / secs,
		P50us: q(0.50), P99us: q(0.99), MaxUs: lat[len(lat)-1], Refused: refused.Load()}, nil
}
