package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/flick-edge/flick/internal/flickapi"
	"github.com/flick-edge/flick/internal/mqtttest"
	"github.com/flick-edge/flick/internal/testregistry"
	"github.com/flick-edge/flick/internal/wasmtest"
)

// module builds a test or example function and writes it where the CLI can
// read it.
func module(t *testing.T, name string) string {
	t.Helper()
	var bin []byte
	if name == "chime" {
		src, err := os.ReadFile("../../examples/functions/chime/chime.c")
		if err != nil {
			t.Fatal(err)
		}
		bin = wasmtest.BuildC(t, string(src))
	} else {
		bin = wasmtest.BuildFile(t, name)
	}
	p := filepath.Join(t.TempDir(), name+".wasm")
	if err := os.WriteFile(p, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (d *Daemon) info(t *testing.T) flickapi.Info {
	t.Helper()
	resp, err := d.httpClient().Get("http://flick/flick/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var i flickapi.Info
	if err := json.NewDecoder(resp.Body).Decode(&i); err != nil {
		t.Fatal(err)
	}
	return i
}

// metric reads one sample from the daemon's /metrics (0 if absent).
func (d *Daemon) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := d.httpClient().Get("http://flick/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, _ := strconv.ParseFloat(rest, 64)
			return v
		}
	}
	return 0
}

func mqttConnect(t *testing.T, d *Daemon) *mqtttest.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := mqtttest.Connect(ctx, d.info(t).MQTT[0], mqtttest.Options{Buffer: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestReflexButtonToChime(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	res := d.mustFlick(t, "fn", "deploy", "chime", "--wasm", module(t, "chime"), "--on", "mqtt:home/+/button", "--reply", "home/{1}/chime", "--timeout", "200ms")
	if !strings.Contains(res.Stdout, "deployed chime") {
		t.Fatal(res)
	}
	speaker := mqttConnect(t, d)
	if err := speaker.Subscribe(tctx(t), 1, "home/+/chime", "replies/#"); err != nil {
		t.Fatal(err)
	}
	button := mqttConnect(t, d)
	rc, err := button.Publish(tctx(t), &paho.Publish{Topic: "home/hall/button", QoS: 1, Payload: []byte(`{"press":"long"}`),
		Properties: &paho.PublishProperties{ResponseTopic: "replies/button-7", CorrelationData: []byte("req-42")}})
	if err != nil || rc != 0 {
		t.Fatal(rc, err)
	}
	got := map[string]*paho.Publish{}
	for range 2 {
		m, err := speaker.Next(tctx(t))
		if err != nil {
			t.Fatal(err)
		}
		got[m.Topic] = m
	}
	want := `{"room":"hall","tune":"westminster","volume":80}`
	if m := got["home/hall/chime"]; m == nil || string(m.Payload) != want {
		t.Fatalf("reply: %+v", got)
	}
	if m := got["replies/button-7"]; m == nil || string(m.Payload) != want || string(m.Properties.CorrelationData) != "req-42" {
		t.Fatalf("MQTT 5 response: %+v", got)
	}
	// Listing, logs, metrics, invoke.
	var list []map[string]any
	if err := json.Unmarshal([]byte(d.mustFlick(t, "fn", "ls", "--json").Stdout), &list); err != nil || len(list) != 1 || list[0]["invocations"].(float64) != 1 {
		t.Fatalf("fn ls --json: %v %v", list, err)
	}
	if logs := d.mustFlick(t, "fn", "logs", "chime").Stdout; !strings.Contains(logs, "hall button -> westminster") {
		t.Fatalf("logs: %s", logs)
	}
	if v := d.metric(t, `flick_function_invocations_total{function="chime",outcome="ok"}`); v != 1 {
		t.Fatalf("metric ok = %v", v)
	}
	if v := d.metric(t, `flick_function_instantiate_seconds_count{function="chime"}`); v != 1 {
		t.Fatalf("instantiate histogram count = %v", v)
	}
	if out := d.mustFlick(t, "fn", "invoke", "chime", `{"press":"double"}`).Stdout; !strings.Contains(out, "triple-chime") {
		t.Fatalf("invoke: %s", out)
	}
	// Bindings survive a restart (the broker port changes: read it again).
	d.Restart()
	speaker = mqttConnect(t, d)
	if err := speaker.Subscribe(tctx(t), 1, "home/+/chime"); err != nil {
		t.Fatal(err)
	}
	button = mqttConnect(t, d)
	if _, err := button.Publish(tctx(t), &paho.Publish{Topic: "home/porch/button", QoS: 1, Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	m, err := speaker.Next(tctx(t))
	if err != nil || m.Topic != "home/porch/chime" || !strings.Contains(string(m.Payload), "ding-dong") {
		t.Fatalf("after restart: %+v %v\n%s", m, err, tailString(d.Log(), 3000))
	}
	d.mustFlick(t, "fn", "rm", "chime")
	if r := d.flick(t, "fn", "invoke", "chime", "x"); r.Code != 3 || !strings.Contains(r.Stderr, "no such function") {
		t.Fatalf("invoke after rm: %s", r)
	}
}

func TestReflexHTTPTriggerAndTimer(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	d.mustFlick(t, "fn", "deploy", "bell", "--wasm", module(t, "echo"), "--on", "http:/doorbell")
	d.mustFlick(t, "fn", "deploy", "tick", "--wasm", module(t, "echo"), "--on", "every:50ms", "--reply", "ticks")
	sub := mqttConnect(t, d)
	if err := sub.Subscribe(tctx(t), 0, "ticks"); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.Next(tctx(t)); err != nil || !strings.Contains(string(m.Payload), "PERIOD") {
		t.Fatalf("timer: %v %v", m, err)
	}
	resp, err := http.Post("http://"+d.info(t).HTTP+"/doorbell", "text/plain", strings.NewReader("ring"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "RING" || resp.Header.Get("Flick-Event") == "" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	// Also on the API socket.
	resp, err = d.httpClient().Post("http://flick/flick/v1/hooks/doorbell", "text/plain", strings.NewReader("knock"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "KNOCK" {
		t.Fatalf("%q", body)
	}
	resp, err = http.Post("http://"+d.info(t).HTTP+"/nothing", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("unbound path answered %d", resp.StatusCode)
	}
}

func TestReflexBadFunctionsAndInput(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t, withArgs("--mqtt-max-packet-size=64KiB"))
	// Refused at deploy, with the reason and a usage exit code.
	notWasm := filepath.Join(t.TempDir(), "script.wasm")
	os.WriteFile(notWasm, []byte("#!/bin/sh\necho hi\n"), 0o644)
	for _, c := range []struct{ file, want string }{
		{notWasm, "not a WebAssembly module"},
		{module(t, "badimport"), "env.open_socket"},
	} {
		r := d.flick(t, "fn", "deploy", "bad", "--wasm", c.file, "--on", "mqtt:x")
		if r.Code != 2 || !strings.Contains(r.Stderr, c.want) {
			t.Fatalf("deploy %s: %s", c.file, r)
		}
	}
	if r := d.flick(t, "fn", "deploy", "x", "--wasm", module(t, "echo"), "--on", "mqtt:a/#/b"); r.Code != 2 || !strings.Contains(r.Stderr, "'#' must be the last level") {
		t.Fatal(r)
	}
	// Misbehaving functions are stopped; a healthy one beside them is not disturbed.
	d.mustFlick(t, "fn", "deploy", "spin", "--wasm", module(t, "loop"), "--on", "mqtt:bad/spin", "--timeout", "100ms", "--dead-letter", "dead/spin")
	d.mustFlick(t, "fn", "deploy", "hog", "--wasm", module(t, "hog"), "--on", "mqtt:bad/hog", "--memory", "2MiB")
	d.mustFlick(t, "fn", "deploy", "flood", "--wasm", module(t, "flood"), "--on", "mqtt:bad/flood", "--max-output", "64KiB")
	d.mustFlick(t, "fn", "deploy", "echo", "--wasm", module(t, "echo"), "--on", "mqtt:good", "--reply", "good/out")
	watch := mqttConnect(t, d)
	if err := watch.Subscribe(tctx(t), 1, "good/out", "dead/#"); err != nil {
		t.Fatal(err)
	}
	pub := mqttConnect(t, d)
	for _, topic := range []string{"bad/spin", "bad/hog", "bad/flood"} {
		go pub.Publish(tctx(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x")})
	}
	for i := range 20 {
		if _, err := pub.Publish(tctx(t), &paho.Publish{Topic: "good", QoS: 1, Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	var good int
	var dead []byte
	for good < 20 || dead == nil {
		m, err := watch.Next(tctx(t))
		if err != nil {
			t.Fatalf("good %d, dead letter %v: %v", good, dead != nil, err)
		}
		if m.Topic == "good/out" {
			good++
		} else {
			dead = m.Payload
		}
	}
	if !strings.Contains(string(dead), `"status":"timeout"`) || !strings.Contains(string(dead), `"payload":"eA=="`) {
		t.Fatalf("dead letter %s", dead)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if d.metric(t, `flick_function_traps_total{function="hog"}`) == 1 && d.metric(t, `flick_function_output_limit_total{function="flood"}`) == 1 &&
			d.metric(t, `flick_function_timeouts_total{function="spin"}`) == 1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, s := range []string{`flick_function_traps_total{function="hog"}`, `flick_function_output_limit_total{function="flood"}`, `flick_function_timeouts_total{function="spin"}`} {
		if d.metric(t, s) != 1 {
			t.Errorf("%s = %v", s, d.metric(t, s))
		}
	}
	// An oversized payload is refused by the broker: the function never runs.
	big := mqttConnect(t, d)
	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	big.Publish(short, &paho.Publish{Topic: "good", QoS: 1, Payload: bytes.Repeat([]byte("x"), 128<<10)})
	if v := d.metric(t, `flick_function_invocations_total{function="echo",outcome="ok"}`); v != 20 {
		t.Fatalf("echo ran %v times, want 20 (the oversized message must not reach it)", v)
	}
}

func TestReflexApply(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t)
	dir := t.TempDir()
	os.Link(module(t, "echo"), filepath.Join(dir, "echo.wasm"))
	os.Link(module(t, "badimport"), filepath.Join(dir, "bad.wasm"))
	write := func(body string) string {
		p := filepath.Join(dir, "hub.yaml")
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	d.mustFlick(t, "fn", "deploy", "old", "--wasm", filepath.Join(dir, "echo.wasm"), "--on", "mqtt:old")
	hub := write(`functions:
  - name: a
    wasm: echo.wasm
    on: ["mqtt:a/+"]
    reply: out/{1}
    timeout: 50ms
    memory: 1MiB
  - name: b
    wasm: echo.wasm
    on: ["http:/b", "every:1h"]
    env: {UNIT: celsius}
`)
	res := d.mustFlick(t, "apply", "-f", hub, "--prune")
	if !strings.Contains(res.Stdout, "deployed a") || !strings.Contains(res.Stdout, "removed old") {
		t.Fatal(res)
	}
	// A set with one bad module changes nothing.
	bad := write(`functions:
  - name: c
    wasm: echo.wasm
    on: ["mqtt:c"]
  - name: d
    wasm: bad.wasm
`)
	if r := d.flick(t, "apply", "-f", bad, "--prune"); r.Code == 0 || !strings.Contains(r.Stderr, "function d") {
		t.Fatal(r)
	}
	if names := d.mustFlick(t, "fn", "ls", "-q").Stdout; names != "a\nb\n" {
		t.Fatalf("after refused apply: %q", names)
	}
	if r := d.flick(t, "apply", "-f", write("functions:\n  - name: e\n    wasm: echo.wasm\n    typo: 1\n")); r.Code != 2 || !strings.Contains(r.Stderr, "typo") {
		t.Fatal(r)
	}
}

func TestReflexFunctionFromRegistry(t *testing.T) {
	requireRoot(t)
	reg := testregistry.Start(t)
	d := startDaemon(t)
	ref := reg.Ref("fn/chime:1.0")
	if r := d.mustFlick(t, "fn", "push", module(t, "chime"), ref); !strings.Contains(r.Stdout, "digest: sha256:") {
		t.Fatal(r)
	}
	d.mustFlick(t, "fn", "deploy", "chime", "--image", ref, "--on", "mqtt:home/+/button")
	if out := d.mustFlick(t, "fn", "invoke", "chime", `{"press":"long"}`).Stdout; !strings.Contains(out, "westminster") {
		t.Fatal(out)
	}
	var st []map[string]any
	json.Unmarshal([]byte(d.mustFlick(t, "fn", "inspect", "chime").Stdout), &st)
	if len(st) != 1 || !strings.Contains(st[0]["image"].(string), "@sha256:") {
		t.Fatalf("image not pinned by digest: %v", st)
	}
}

func TestReflexObservability(t *testing.T) {
	requireRoot(t)
	d := startDaemon(t, withArgs("--metrics-addr=127.0.0.1:0"))
	d.mustFlick(t, "fn", "deploy", "echo", "--wasm", module(t, "echo"), "--on", "mqtt:obs")
	d.mustFlick(t, "fn", "deploy", "broken", "--wasm", module(t, "fail"), "--on", "mqtt:obs/broken")
	info := d.mustFlick(t, "info").Stdout
	if !strings.Contains(info, "Functions: 2") || !strings.Contains(info, "MQTT Broker: 127.0.0.1:") {
		t.Fatalf("flick info: %s", info)
	}
	// flick events streams what happens from now on.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev := exec.CommandContext(ctx, flickBin(t), "-H", d.Host(), "events", "--json")
	out, err := ev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); ev.Wait() }()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(300 * time.Millisecond) // let the stream subscribe
	d.mustFlick(t, "fn", "invoke", "echo", "hi")
	d.flick(t, "fn", "invoke", "broken", "x")
	seen := map[string]bool{}
	for !(seen["done echo"] && seen["error broken"]) {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("events stream ended; seen %v", seen)
			}
			var e struct{ Type, Function string }
			json.Unmarshal([]byte(l), &e)
			seen[e.Type+" "+e.Function] = true
		case <-ctx.Done():
			t.Fatalf("events seen: %v", seen)
		}
	}
	// /metrics on its own TCP address, Prometheus text format.
	resp, err := http.Get("http://" + d.info(t).Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`flick_function_invocations_total{function="echo",outcome="ok"} 1`,
		`flick_function_invocations_total{function="broken",outcome="error"} 1`,
		`flick_function_run_seconds_bucket{function="echo",le="+Inf"} 1`,
		`flick_function_queue_wait_seconds_count{function="echo"} 1`,
		"flick_mqtt_clients ", "process_resident_memory_bytes ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
