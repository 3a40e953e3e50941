package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/flick-edge/flick/internal/mqtttest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// mosquitto is a real upstream broker on a fixed free loopback port, so it
// can be stopped and started again at the same address.
type mosquitto struct {
	t    *testing.T
	port int
	conf string
	cmd  *exec.Cmd
}

func startMosquitto(t *testing.T) *mosquitto {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	// Persistence, so a subscriber's session and its queued messages
	// survive the restarts (mosquitto saves them when stopped with SIGTERM).
	// As root: started by root, mosquitto otherwise runs as its own user,
	// which cannot write the test's directory; the save then failed, every
	// restart lost the session, and events Flick sent before the
	// subscriber came back were dropped by the broker (a flake under load).
	dir := filepath.Dir(conf)
	os.WriteFile(conf, []byte(fmt.Sprintf("user root\nlistener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 100000\nmax_inflight_messages 0\n", port, dir)), 0o644)
	m := &mosquitto{t: t, port: port, conf: conf}
	m.start()
	t.Cleanup(m.stop)
	return m
}

func (m *mosquitto) addr() string { return "127.0.0.1:" + strconv.Itoa(m.port) }

func (m *mosquitto) start() {
	m.t.Helper()
	m.cmd = exec.Command("mosquitto", "-c", m.conf)
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("mosquitto (apt-get install mosquitto): %v", err)
	}
	waitFor(m.t, "mosquitto", 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", m.addr(), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (m *mosquitto) stop() {
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { m.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			m.cmd.Process.Kill()
			<-done
		}
		m.cmd = nil
	}
}

// TestRouteSurvivesOutagesAndCrashes forwards 10,000 events to a real
// mosquitto while mosquitto is stopped and restarted twice and the Flick
// daemon is SIGKILLed and restarted once: every accepted event arrives, in
// order per publisher, with duplicates only under the same message id.
func TestRouteSurvivesOutagesAndCrashes(t *testing.T) {
	requireRoot(t)
	up := startMosquitto(t)
	d := startDaemon(t, withArgs("--hub-id=hub7", "--log-level=info"))
	d.mustFlick(t, "route", "add", "cloud", "--from", "sensors/#", "--to", "mqtt://"+up.addr()+"/fleet/{hub}/{topic}", "--batch", "200")

	const publishers, each = 4, 2500
	var mu sync.Mutex
	var accepted, resent sync.Map // payloads acknowledged to, and sent again by, their device
	got := map[string][]int{}     // publisher -> sequence numbers in arrival order
	ids := map[string]string{}    // payload -> message id
	dupSameID, dupOtherID, dupResent := 0, 0, 0
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The cloud side: a subscriber with a persistent session that comes
	// back whenever the broker does.
	process := func(m *paho.Publish) {
		pub, seq, _ := strings.Cut(string(m.Payload), ":")
		n, _ := strconv.Atoi(seq)
		id := m.Properties.User.Get("flick-msg-id")
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := ids[string(m.Payload)]; ok {
			if prev == id {
				dupSameID++
			} else if _, ok := resent.Load(string(m.Payload)); !ok {
				dupOtherID++
			} else {
				dupResent++
			}
			return
		}
		ids[string(m.Payload)] = id
		got[pub] = append(got[pub], n)
	}
	collect := func(s *mqtttest.Client, lost <-chan struct{}) {
		for {
			select {
			case m := <-s.Messages:
				process(m)
			case <-lost:
				for {
					select {
					case m := <-s.Messages:
						process(m)
					default:
						return
					}
				}
			case <-ctx.Done():
				return
			}
		}
	}
	// Publishing starts once the cloud side has subscribed: until then
	// the broker answers Flick's publishes "no matching subscribers" (a
	// success) and drops them, which no engine can help.
	subscribed := make(chan struct{})
	var subscribedOnce sync.Once
	go func() {
		for ctx.Err() == nil {
			lost := make(chan struct{})
			s, err := mqtttest.Connect(ctx, up.addr(), mqtttest.Options{ClientID: "cloud-sub", Buffer: 1 << 15, Persistent: true,
				OnDisconnect: func() { close(lost) }})
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if err := s.Subscribe(ctx, 1, "fleet/hub7/sensors/#"); err != nil {
				// What the restored session delivered meanwhile was
				// acknowledged already: it counts.
				s.Close()
				for drained := false; !drained; {
					select {
					case m := <-s.Messages:
						process(m)
					default:
						drained = true
					}
				}
				continue
			}
			subscribedOnce.Do(func() { close(subscribed) })
			collect(s, lost)
		}
	}()
	var pubWG sync.WaitGroup
	publish := func(p int, from, to int) {
		defer pubWG.Done()
		var c *mqtttest.Client
		for i := from; i < to; i++ {
			for c == nil {
				var err error
				if c, err = mqtttest.Connect(ctx, d.info(t).MQTT[0], mqtttest.Options{}); err != nil {
					c = nil
					time.Sleep(50 * time.Millisecond)
				}
			}
			payload := fmt.Sprintf("p%d:%d", p, i)
			if _, err := c.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("sensors/p%d", p), QoS: 1, Payload: []byte(payload)}); err != nil {
				// The daemon went away: this event was not acknowledged, so
				// the device sends it again. If Flick had stored it just before
				// dying, the resend is a new message to Flick (new id): the one
				// kind of duplicate a device's own retry can cause.
				c = nil
				resent.Store(payload, true)
				i--
				continue
			}
			accepted.Store(payload, true)
		}
		if c != nil {
			c.Close()
		}
	}
	select {
	case <-subscribed:
	case <-ctx.Done():
		t.Fatal("the cloud subscriber never subscribed")
	}
	// First half, with the upstream going away and coming back twice.
	for p := range publishers {
		pubWG.Add(1)
		go publish(p, 0, each/2)
	}
	time.Sleep(300 * time.Millisecond)
	up.stop()
	time.Sleep(time.Second)
	up.start()
	time.Sleep(500 * time.Millisecond)
	up.stop()
	time.Sleep(time.Second)
	up.start()
	pubWG.Wait()
	// The daemon dies mid-stream (SIGKILL) and comes back.
	for p := range publishers {
		pubWG.Add(1)
		go publish(p, each/2, each)
	}
	time.Sleep(200 * time.Millisecond)
	d.Kill()
	time.Sleep(300 * time.Millisecond)
	d.start()
	pubWG.Wait()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		n := len(ids)
		mu.Unlock()
		if n >= publishers*each || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	missing := 0
	accepted.Range(func(k, _ any) bool {
		if _, ok := ids[k.(string)]; !ok {
			missing++
		}
		return true
	})
	st := d.mustFlick(t, "route", "ls").Stdout
	t.Logf("received %d distinct, %d duplicates with the same id, %d resent by their device after a lost PUBACK, %d others; missing %d\n%s",
		len(ids), dupSameID, dupResent, dupOtherID, missing, st)
	if missing > 0 {
		t.Fatalf("%d accepted events never reached the upstream", missing)
	}
	if dupOtherID > 0 {
		t.Fatalf("%d duplicates carried a different message id although their device sent them once", dupOtherID)
	}
	for p, seqs := range got {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] < seqs[i-1] {
				t.Fatalf("publisher %s: %d arrived after %d: out of order", p, seqs[i], seqs[i-1])
			}
		}
	}
}

// startMosquittoWith starts another mosquitto with extra config lines.
func startMosquittoWith(t *testing.T, extra string) *mosquitto {
	t.Helper()
	m := startMosquitto(t)
	m.stop()
	b, _ := os.ReadFile(m.conf)
	os.WriteFile(m.conf, append(b, extra...), 0o644)
	m.start()
	return m
}

// TestRouteRefusalsAndQuota: a message the upstream refuses is
// dead-lettered on the hub, counted and not retried forever, while the ones
// after it flow; an outbox at its quota under "refuse" answers MQTT 5
// devices 0x97 and counts them, and nothing else breaks.
func TestRouteRefusalsAndQuota(t *testing.T) {
	requireRoot(t)
	up := startMosquittoWith(t, "max_packet_size 2048\n")
	d := startDaemon(t, withArgs("--hub-id=hub8", "--log-level=info"))
	d.mustFlick(t, "route", "add", "cloud", "--from", "data/#", "--to", "mqtt://"+up.addr()+"/up")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cloud, err := mqtttest.Connect(ctx, up.addr(), mqtttest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	if err := cloud.Subscribe(ctx, 1, "up/#"); err != nil {
		t.Fatal(err)
	}
	local := mqttConnect(t, d)
	if err := local.Subscribe(ctx, 1, "flick/dead-letter/#"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"small-1", strings.Repeat("B", 8192), "small-2"} {
		if _, err := local.Publish(ctx, &paho.Publish{Topic: "data/x", QoS: 1, Payload: []byte(p)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"small-1", "small-2"} {
		m, err := cloud.Next(ctx)
		if err != nil || string(m.Payload) != want {
			t.Fatalf("upstream got %v, want %s (%v)", m, want, err)
		}
	}
	dl, err := local.Next(ctx)
	if err != nil || len(dl.Payload) != 8192 || dl.Properties.User.Get("flick-error") == "" {
		t.Fatalf("dead letter: %v %v", dl, err)
	}
	if v := d.metric(t, `flick_route_failed_total{route="cloud"}`); v != 1 {
		t.Fatalf("failed counter %v", v)
	}
	// Quota: an unreachable upstream, a 64 KiB outbox, refuse when full.
	d.mustFlick(t, "route", "add", "tiny", "--from", "bulk/#", "--to", "mqtt://127.0.0.1:1/x", "--max-size", "64KiB", "--when-full", "refuse")
	refused, accepted := 0, 0
	payload := []byte(strings.Repeat("z", 1024))
	for range 200 {
		rc, err := local.Publish(ctx, &paho.Publish{Topic: "bulk/a", QoS: 1, Payload: payload})
		if err != nil && rc != 0x97 {
			t.Fatal(err)
		}
		if rc == 0x97 {
			refused++
		} else {
			accepted++
		}
	}
	if refused == 0 || accepted == 0 {
		t.Fatalf("quota: accepted %d refused %d", accepted, refused)
	}
	if v := d.metric(t, `flick_route_refused_total{route="tiny"}`); int(v) != refused {
		t.Fatalf("refused counter %v, devices saw %d", v, refused)
	}
	// The other route still works.
	local.Publish(ctx, &paho.Publish{Topic: "data/y", QoS: 1, Payload: []byte("still-flowing")})
	if m, err := cloud.Next(ctx); err != nil || string(m.Payload) != "still-flowing" {
		t.Fatalf("after the quota: %v %v", m, err)
	}
}

// TestRouteToNATSJetStream: a route to a real nats-server with JetStream;
// messages land in the stream, with their ids as Nats-Msg-Id.
func TestRouteToNATSJetStream(t *testing.T) {
	requireRoot(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ns := exec.Command("nats-server", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", t.TempDir())
	if err := ns.Start(); err != nil {
		t.Fatalf("nats-server (apt-get install nats-server): %v", err)
	}
	t.Cleanup(func() { ns.Process.Kill(); ns.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	var nc *nats.Conn
	waitFor(t, "nats-server", 10*time.Second, func() bool { nc, err = nats.Connect(url); return err == nil })
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FLEET", Subjects: []string{"fleet.>"}})
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, withArgs("--hub-id=hub9", "--log-level=info"))
	d.mustFlick(t, "route", "add", "js", "--from", "meter/#", "--to", url+"/fleet.{hub}")
	local := mqttConnect(t, d)
	for i := range 100 {
		if _, err := local.Publish(ctx, &paho.Publish{Topic: "meter/kitchen", QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "100 messages in the stream", 30*time.Second, func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs == 100
	})
	msg, err := stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "fleet.hub9.meter.kitchen" || string(msg.Data) != "0" || msg.Header.Get("Nats-Msg-Id") == "" {
		t.Fatalf("first message: subject %s data %q headers %v", msg.Subject, msg.Data, msg.Header)
	}
}

// TestRoutesInHubFile: routes declared in hub.yaml are applied with the
// functions, and --prune removes the ones the file no longer names; an
// upstream that is down is fine (the route waits).
func TestRoutesInHubFile(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	dir := t.TempDir()
	hub := filepath.Join(dir, "hub.yaml")
	os.WriteFile(hub, []byte(`routes:
  - name: cloud
    from: ["home/#"]
    to: mqtt://127.0.0.1:1/fleet/{hub}
    ttl: 1h
    max-size: 1MiB
    when-full: refuse
`), 0o644)
	if out := d.mustFlick(t, "apply", "-f", hub).Stdout; !strings.Contains(out, "route cloud") {
		t.Fatalf("apply: %s", out)
	}
	ls := d.mustFlick(t, "route", "ls").Stdout
	if !strings.Contains(ls, "cloud") || !strings.Contains(ls, "waiting") {
		t.Fatalf("route ls: %s", ls)
	}
	os.WriteFile(hub, []byte("routes: []\n"), 0o644)
	if out := d.mustFlick(t, "apply", "-f", hub, "--prune").Stdout; !strings.Contains(out, "removed route cloud") {
		t.Fatalf("apply --prune: %s", out)
	}
	if r := d.flick(t, "route", "add", "bad", "--from", "a/#/b", "--to", "mqtt://127.0.0.1:1"); r.Code != 2 {
		t.Fatalf("bad filter accepted: %s", r)
	}
	if r := d.flick(t, "route", "add", "bad", "--from", "a", "--to", "ftp://x"); r.Code != 2 {
		t.Fatalf("bad URL accepted: %s", r)
	}
}

// TestOutboxTornTail: after a crash that left garbage at the end of a
// route's outbox, the daemon starts, reports the cut, keeps every message
// accepted before it, and forwards them once the upstream is there.
func TestOutboxTornTail(t *testing.T) {
	requireRoot(t)
	up := startMosquitto(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The cloud's subscriber leaves a persistent session, so what arrives
	// while it is away waits for it (mosquitto saves it when stopped).
	port := strconv.Itoa(up.port)
	if out, err := exec.Command("mosquitto_sub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", port, "-c", "-i", "late-sub", "-x", "3600",
		"-q", "1", "-t", "up/#", "-E").CombinedOutput(); err != nil {
		t.Fatalf("create the subscriber's session: %v %s", err, out)
	}
	up.stop() // the upstream is down while messages pile up
	d := startDaemon(t, withArgs("--hub-id=hub10", "--log-level=info"))
	d.mustFlick(t, "route", "add", "late", "--from", "q/#", "--to", "mqtt://"+up.addr()+"/up")
	local := mqttConnect(t, d)
	for i := range 10 {
		if _, err := local.Publish(ctx, &paho.Publish{Topic: "q/x", QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	d.Kill()
	segs, _ := filepath.Glob(filepath.Join(d.DataRoot, "outbox", "late", "*.seg"))
	if len(segs) == 0 {
		t.Fatal("no outbox segment on disk")
	}
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("\x13\x37half-written record from the instant of the cut"))
	f.Close()
	d.start()
	if !strings.Contains(d.Log(), "torn or corrupt tail") {
		t.Fatalf("the cut was not reported:\n%s", tailString(d.Log(), 3000))
	}
	if ls := d.mustFlick(t, "route", "ls").Stdout; !strings.Contains(ls, " 10 (") {
		t.Fatalf("the 10 accepted messages are not all queued:\n%s", ls)
	}
	up.start()
	out, err := exec.CommandContext(ctx, "mosquitto_sub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", port, "-c", "-i", "late-sub", "-x", "3600",
		"-q", "1", "-t", "up/#", "-C", "10", "-W", "30").Output()
	if err != nil {
		t.Fatalf("the cloud got %q: %v", out, err)
	}
	if want := "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n"; string(out) != want {
		t.Fatalf("the cloud got %q, want the 10 messages in order", out)
	}
}

// TestFleetCommandsReachFunctions: an inbound route subscribes to the
// hub's command topics on a real mosquitto; a command runs the function
// bound to the local topic it maps to, and an outbound route carries the
// result back to the cloud. Commands sent while the hub is down wait in its
// session on the broker and run when it is back.
func TestFleetCommandsReachFunctions(t *testing.T) {
	requireRoot(t)
	up := startMosquitto(t)
	d := startDaemon(t, withArgs("--hub-id=hub7"))
	d.mustFlick(t, "fn", "deploy", "chime", "--wasm", module(t, "chime"), "--on", "mqtt:home/+/button", "--reply", "home/{1}/chime")
	d.mustFlick(t, "route", "add", "results", "--from", "home/+/chime", "--to", "mqtt://"+up.addr()+"/fleet/{hub}/{topic}")
	if out := d.mustFlick(t, "route", "add", "commands", "--from", "mqtt://"+up.addr()+"/fleet/{hub}/cmd/#", "--to", "home/{topic}").Stdout; !strings.Contains(out, "route commands") {
		t.Fatal(out)
	}
	if r := d.flick(t, "route", "add", "bad", "--from", "mqtt://"+up.addr()+"/fleet/#", "--to", "mqtt://elsewhere:1883"); r.Code != 2 || !strings.Contains(r.Stderr, "local topic") {
		t.Fatalf("an inbound route to a URL was accepted: %s", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cloud, err := mqtttest.Connect(ctx, up.addr(), mqtttest.Options{Buffer: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	if err := cloud.Subscribe(ctx, 1, "fleet/hub7/home/#"); err != nil {
		t.Fatal(err)
	}
	command := func(room string) {
		if _, err := cloud.Publish(ctx, &paho.Publish{Topic: "fleet/hub7/cmd/" + room + "/button", QoS: 1, Payload: []byte(`{"press":"long"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	result := func(room string) {
		t.Helper()
		for {
			m, err := cloud.Next(ctx)
			if err != nil {
				t.Fatalf("no result for %s: %v", room, err)
			}
			if m.Topic == "fleet/hub7/home/"+room+"/chime" && strings.Contains(string(m.Payload), `"room":"`+room+`"`) {
				return
			}
		}
	}
	// The hub subscribes in the background: command until it answers.
	waitFor(t, "inbound route connected", 30*time.Second, func() bool {
		return strings.Contains(d.mustFlick(t, "route", "ls").Stdout, "connected")
	})
	answered := make(chan struct{})
	go func() {
		for {
			command("hall")
			select {
			case <-answered:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	result("hall")
	close(answered)
	// Away: the command waits in the hub's session on the broker.
	d.Stop()
	command("kitchen")
	d.start()
	result("kitchen")
	var list []map[string]any
	if err := json.Unmarshal([]byte(d.mustFlick(t, "route", "ls", "--json").Stdout), &list); err != nil {
		t.Fatal(err)
	}
	for _, r := range list {
		if r["name"] == "commands" && (r["sent"].(float64) < 1 || r["connected"] != true) {
			t.Fatalf("inbound route status %v", r)
		}
	}
}
