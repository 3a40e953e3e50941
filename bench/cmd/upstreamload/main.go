// Command upstreamload measures forwarding to an upstream MQTT broker or
// nats-server: N publishers send QoS 1 messages of a given size to -pub
// (Flick's broker, through a route, or the upstream itself for the raw peer
// figure) while a subscriber on -sub counts arrivals. It prints throughput
// (messages/s, first publish to last arrival) and the added latency
// (p50/p99) as JSON.
//
// An address nats://HOST:PORT is a nats-server: -sub-filter is then a
// subject, and raw publishers there publish plainly (as nats bench does),
// flushing (one round trip) every -inflight messages.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/flick-edge/flick/internal/mqtttest"
	"github.com/nats-io/nats.go"
)

func main() {
	pub := flag.String("pub", "", "broker the devices publish to")
	sub := flag.String("sub", "", "upstream broker to count arrivals on")
	pubTopic := flag.String("pub-topic", "bench/up", "topic published")
	subFilter := flag.String("sub-filter", "#", "filter on the upstream")
	n := flag.Int("messages", 20000, "messages in total (bounded)")
	clients := flag.Int("clients", 8, "publishing connections")
	inflight := flag.Int("inflight", 1, "QoS 1 messages each connection keeps in flight (1: publish, wait for the PUBACK, publish)")
	size := flag.Int("size", 200, "payload bytes (at least 16)")
	label := flag.String("label", "run", "label")
	timeout := flag.Duration("timeout", 3*time.Minute, "give up after")
	clientID := flag.String("client-id", "", "subscriber client id (with -persistent: resume its session)")
	persistent := flag.Bool("persistent", false, "subscriber keeps a persistent session")
	mode := flag.String("mode", "both", "both: publish and count; publish: only publish; count: only count arrivals (rate from first to last)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *mode == "publish" {
		publishAll(ctx, *pub, *pubTopic, *n, *clients, *size)
		return
	}
	var got atomic.Int64
	lat := make([]float64, 0, *n)
	var first, last atomic.Int64
	var mu sync.Mutex
	arrived := func(payload []byte) {
		now := time.Now().UnixNano()
		if len(payload) >= 16 {
			sent := int64(binary.BigEndian.Uint64(payload[8:16]))
			mu.Lock()
			lat = append(lat, float64(now-sent)/1e3)
			mu.Unlock()
		}
		first.CompareAndSwap(0, now)
		last.Store(now)
		got.Add(1)
	}
	stop := subscribe(ctx, *sub, *subFilter, *clientID, *persistent, arrived)
	defer stop()
	start := time.Now()
	if *mode == "count" {
		for got.Load() < int64(*n) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		if ctx.Err() != nil {
			fail(fmt.Errorf("timed out with %d of %d", got.Load(), *n))
		}
		secs := float64(last.Load()-first.Load()) / 1e9
		json.NewEncoder(os.Stdout).Encode(map[string]any{"label": *label, "messages": *n, "seconds": secs, "perSecond": float64(*n) / secs, "lastNs": last.Load()})
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range *clients {
		if nc, ok := natsConnect(*pub); ok {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				natsPublishLoop(nc, &next, *n, *size, *pubTopic, max(*inflight, 1))
			}()
			continue
		}
		c, err := mqtttest.Connect(ctx, *pub, mqtttest.Options{})
		if err != nil {
			fail(err)
		}
		var conn sync.WaitGroup
		for range max(*inflight, 1) {
			conn.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Done()
				publishLoop(ctx, c, &next, *n, *size, *pubTopic)
			}()
		}
		go func() { conn.Wait(); c.Close() }()
	}
	wg.Wait()
	for got.Load() < int64(*n) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if ctx.Err() != nil {
		fail(fmt.Errorf("timed out with %d of %d", got.Load(), *n))
	}
	secs := float64(last.Load()-start.UnixNano()) / 1e9
	mu.Lock()
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	out := map[string]any{"label": *label, "messages": *n, "seconds": secs, "perSecond": float64(*n) / secs, "p50_us": q(0.5), "p99_us": q(0.99)}
	mu.Unlock()
	json.NewEncoder(os.Stdout).Encode(out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "upstreamload:", err)
	os.Exit(1)
}

// publishAll sends n messages from the given number of clients and returns.
func publishAll(ctx context.Context, addr, topic string, n, clients, size int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		c, err := mqtttest.Connect(ctx, addr, mqtttest.Options{})
		if err != nil {
			fail(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			publishLoop(ctx, c, &next, n, size, topic)
		}()
	}
	wg.Wait()
}

// publishLoop publishes numbered, timestamped messages until n are sent,
// waiting for each PUBACK.
func publishLoop(ctx context.Context, c *mqtttest.Client, next *atomic.Int64, n, size int, topic string) {
	buf := make([]byte, max(size, 16))
	for {
		i := next.Add(1)
		if i > int64(n) {
			return
		}
		binary.BigEndian.PutUint64(buf[0:8], uint64(i))
		binary.BigEndian.PutUint64(buf[8:16], uint64(time.Now().UnixNano()))
		if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: buf}); err != nil {
			fail(err)
		}
	}
}

// subscribe counts arrivals on addr (MQTT, or nats://) until stop.
func subscribe(ctx context.Context, addr, filter, clientID string, persistent bool, arrived func([]byte)) (stop func()) {
	if strings.HasPrefix(addr, "nats://") {
		var nc *nats.Conn
		var err error
		for { // the upstream may still be starting
			if nc, err = nats.Connect(addr); err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err != nil {
			fail(err)
		}
		sub, err := nc.Subscribe(filter, func(m *nats.Msg) { arrived(m.Data) })
		if err != nil {
			fail(err)
		}
		sub.SetPendingLimits(-1, -1)
		if err := nc.Flush(); err != nil {
			fail(err)
		}
		return nc.Close
	}
	var s *mqtttest.Client
	var err error
	for { // the upstream may still be starting
		if s, err = mqtttest.Connect(ctx, addr, mqtttest.Options{Buffer: 1 << 16, ClientID: clientID, Persistent: persistent}); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err != nil {
		fail(err)
	}
	if err := s.Subscribe(ctx, 1, filter); err != nil && !persistent {
		fail(err)
	}
	go func() {
		for {
			m, err := s.Next(ctx)
			if err != nil {
				return
			}
			arrived(m.Payload)
		}
	}()
	return func() { s.Close() }
}

// natsConnect connects a raw publisher when addr is a nats-server.
func natsConnect(addr string) (*nats.Conn, bool) {
	if !strings.HasPrefix(addr, "nats://") {
		return nil, false
	}
	nc, err := nats.Connect(addr)
	if err != nil {
		fail(err)
	}
	return nc, true
}

// natsPublishLoop publishes plainly, as nats bench does, with a flush (a
// round trip: the server has read everything before it) every window
// messages, so at most window are unconfirmed, like -inflight for MQTT.
func natsPublishLoop(nc *nats.Conn, next *atomic.Int64, n, size int, subject string, window int) {
	buf := make([]byte, max(size, 16))
	for k := 1; ; k++ {
		i := next.Add(1)
		if i > int64(n) {
			break
		}
		binary.BigEndian.PutUint64(buf[0:8], uint64(i))
		binary.BigEndian.PutUint64(buf[8:16], uint64(time.Now().UnixNano()))
		if err := nc.Publish(subject, buf); err != nil {
			fail(err)
		}
		if k%window == 0 {
			if err := nc.Flush(); err != nil {
				fail(err)
			}
		}
	}
	if err := nc.Flush(); err != nil {
		fail(err)
	}
}
