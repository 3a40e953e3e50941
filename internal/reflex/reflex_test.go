package reflex_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/content"
	"github.com/flick-edge/flick/internal/function"
	"github.com/flick-edge/flick/internal/reflex"
	"github.com/flick-edge/flick/internal/wasm"
	"github.com/flick-edge/flick/internal/wasmtest"
)

// recorder is the engine's outbound side in these tests; the real broker
// is exercised by the broker package and the e2e tests.
type recorder struct {
	mu   sync.Mutex
	msgs []reflex.Message
	c    chan reflex.Message
}

func (r *recorder) Publish(m reflex.Message) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.c <- m:
	default:
	}
	return nil
}

func (r *recorder) next(t *testing.T) reflex.Message {
	t.Helper()
	select {
	case m := <-r.c:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message published")
	}
	return reflex.Message{}
}

type env struct {
	dir   string
	wasm  *wasm.Engine
	store *function.Store
	blobs *content.Local
	pub   *recorder
	eng   *reflex.Engine
}

func newEnv(t *testing.T, dir string) *env {
	t.Helper()
	w, err := wasm.NewEngine(filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := function.OpenStore(filepath.Join(dir, "functions.db"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := content.Open(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	pub := &recorder{c: make(chan reflex.Message, 1024)}
	e := reflex.New(reflex.Config{Wasm: w, Store: st, Blobs: cs, Publish: pub})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	ev := &env{dir: dir, wasm: w, store: st, blobs: cs, pub: pub, eng: e}
	t.Cleanup(ev.close)
	return ev
}

func (v *env) close() {
	if v.eng == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v.eng.Close(ctx)
	v.store.Close()
	v.wasm.Close()
	v.eng = nil
}

func deploy(t *testing.T, e *reflex.Engine, sp function.Spec, fixture string) {
	t.Helper()
	if _, err := e.Deploy(context.Background(), []reflex.Deployment{{Spec: sp, Wasm: wasmtest.BuildFile(t, fixture)}}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestMQTTEventRunsAndReplies(t *testing.T) {
	v := newEnv(t, t.TempDir())
	deploy(t, v.eng, function.Spec{Name: "chime", On: []string{"mqtt:home/+/button"}, Reply: "home/{1}/chime"}, "echo")
	wait, err := v.eng.Dispatch(reflex.Inbound{Source: "mqtt", Topic: "home/hall/button", Payload: []byte("ding"),
		ResponseTopic: "replies/me", CorrelationData: []byte("c1")}, true)
	if err != nil || wait == nil {
		t.Fatal(wait == nil, err)
	}
	if err := wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]reflex.Message{}
	for range 2 {
		m := v.pub.next(t)
		got[m.Topic] = m
	}
	if m := got["home/hall/chime"]; string(m.Payload) != "DING" {
		t.Fatalf("reply %+v", got)
	}
	if m := got["replies/me"]; string(m.Payload) != "DING" || string(m.CorrelationData) != "c1" {
		t.Fatalf("response %+v", got)
	}
	logs, _, _ := v.eng.Logs("chime", 10, false)
	if len(logs) == 0 || !strings.Contains(logs[len(logs)-1].Text, "home/hall/button") {
		t.Fatalf("logs %+v", logs)
	}
	// A topic no function is bound to is ignored.
	if w, err := v.eng.Dispatch(reflex.Inbound{Topic: "home/hall/door"}, true); w != nil || err != nil {
		t.Fatal("unbound topic dispatched")
	}
}

func TestFailureRetriesThenDeadLetters(t *testing.T) {
	v := newEnv(t, t.TempDir())
	deploy(t, v.eng, function.Spec{Name: "broken", On: []string{"mqtt:sensors/#"}, Retries: 2, DeadLetter: "dead/broken"}, "fail")
	out, err := v.eng.Invoke(context.Background(), "broken", reflex.Inbound{Source: "invoke", Topic: "sensors/t1", Payload: []byte("42")})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != "error" || out.Attempts != 3 || out.ExitCode != 3 {
		t.Fatalf("%+v", out)
	}
	m := v.pub.next(t)
	var dl reflex.DeadLetter
	if err := json.Unmarshal(m.Payload, &dl); err != nil || m.Topic != "dead/broken" {
		t.Fatal(m.Topic, err)
	}
	if dl.Attempts != 3 || dl.Payload != "NDI=" || !strings.Contains(dl.Log, "out of range") || dl.Error != "exit status 3" {
		t.Fatalf("%+v", dl)
	}
}

func TestLoopingFunctionDoesNotDisturbOthers(t *testing.T) {
	v := newEnv(t, t.TempDir())
	deploy(t, v.eng, function.Spec{Name: "spin", On: []string{"mqtt:spin"}, Timeout: 100 * time.Millisecond, Concurrency: 1}, "loop")
	deploy(t, v.eng, function.Spec{Name: "echo", On: []string{"mqtt:echo"}}, "echo")
	spin, err := v.eng.Dispatch(reflex.Inbound{Topic: "spin"}, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		out, err := v.eng.Invoke(context.Background(), "echo", reflex.Inbound{Payload: []byte{'a' + byte(i)}})
		if err != nil || out.Status != "ok" || string(out.Result) != string([]byte{'A' + byte(i)}) {
			t.Fatalf("%+v %v", out, err)
		}
	}
	if err := spin(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ := v.eng.Get("spin")
	if st.Failed != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestOverflowPolicies(t *testing.T) {
	v := newEnv(t, t.TempDir())
	// One slow instance at a time, room for two waiting events.
	deploy(t, v.eng, function.Spec{Name: "rej", On: []string{"mqtt:rej"}, Timeout: 200 * time.Millisecond, Concurrency: 1, Queue: 2}, "loop")
	deploy(t, v.eng, function.Spec{Name: "drop", On: []string{"mqtt:drop"}, Timeout: 200 * time.Millisecond, Concurrency: 1, Queue: 2, Overflow: "drop-oldest"}, "loop")
	var rejected, accepted int
	var waits []func(context.Context) error
	for range 6 {
		w, err := v.eng.Dispatch(reflex.Inbound{Topic: "rej"}, true)
		switch {
		case errors.Is(err, reflex.ErrOverloaded):
			rejected++
		case err != nil:
			t.Fatal(err)
		default:
			accepted++
			waits = append(waits, w)
		}
	}
	// At most 1 running + 2 queued are accepted; the rest are refused.
	if accepted > 3 || rejected < 3 || accepted+rejected != 6 {
		t.Fatalf("accepted %d rejected %d", accepted, rejected)
	}
	var dropWaits []func(context.Context) error
	for range 6 {
		w, err := v.eng.Dispatch(reflex.Inbound{Topic: "drop"}, true)
		if err != nil {
			t.Fatal("drop-oldest must never refuse:", err)
		}
		dropWaits = append(dropWaits, w)
	}
	for _, w := range append(waits, dropWaits...) {
		if err := w(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := v.eng.Get("drop")
	if st.Dropped < 3 || st.Rejected != 0 {
		t.Fatalf("drop: %+v", st)
	}
	st, _ = v.eng.Get("rej")
	if st.Rejected < 3 || st.Dropped != 0 {
		t.Fatalf("rej: %+v", st)
	}
}

func TestDeployIsAtomicAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	v := newEnv(t, dir)
	deploy(t, v.eng, function.Spec{Name: "keep", On: []string{"mqtt:k", "http:/k"}}, "echo")
	// A set with one bad module changes nothing.
	_, err := v.eng.Deploy(context.Background(), []reflex.Deployment{
		{Spec: function.Spec{Name: "good", On: []string{"mqtt:g"}}, Wasm: wasmtest.BuildFile(t, "echo")},
		{Spec: function.Spec{Name: "bad"}, Wasm: wasmtest.BuildFile(t, "badimport")},
	}, []string{"keep"})
	if err == nil || !strings.Contains(err.Error(), "bad") {
		t.Fatalf("want refusal naming the bad function, got %v", err)
	}
	if l := v.eng.List(); len(l) != 1 || l[0].Name != "keep" {
		t.Fatalf("after refused apply: %+v", l)
	}
	// Two functions cannot share an HTTP path.
	if _, err := v.eng.Deploy(context.Background(), []reflex.Deployment{{Spec: function.Spec{Name: "other", On: []string{"http:/k"}}, Wasm: wasmtest.BuildFile(t, "echo")}}, nil); err == nil {
		t.Fatal("second function on http:/k accepted")
	}
	v.close()
	v2 := newEnv(t, dir)
	if l := v2.eng.List(); len(l) != 1 || l[0].Name != "keep" || len(l[0].Triggers) != 2 {
		t.Fatalf("after restart: %+v", l)
	}
	out, err := v2.eng.Invoke(context.Background(), "keep", reflex.Inbound{Payload: []byte("x")})
	if err != nil || string(out.Result) != "X" {
		t.Fatal(out, err)
	}
	if fn, ok := v2.eng.HTTPFunction("/k"); !ok || fn != "keep" {
		t.Fatal("http route lost")
	}
	if err := v2.eng.Remove("keep"); err != nil {
		t.Fatal(err)
	}
	if err := v2.eng.Remove("keep"); err == nil {
		t.Fatal("removing twice succeeded")
	}
}

func TestTimerTrigger(t *testing.T) {
	v := newEnv(t, t.TempDir())
	deploy(t, v.eng, function.Spec{Name: "tick", On: []string{"every:20ms"}, Reply: "ticks"}, "echo")
	m := v.pub.next(t)
	if m.Topic != "ticks" || !strings.Contains(string(m.Payload), `"PERIOD":"20MS"`) {
		t.Fatalf("%+v %s", m, m.Payload)
	}
}

func TestBuiltinEchoBaseline(t *testing.T) {
	v := newEnv(t, t.TempDir())
	if _, err := v.eng.Deploy(context.Background(), []reflex.Deployment{{Spec: function.Spec{Name: "floor", Builtin: "echo", On: []string{"mqtt:f"}}}}, nil); err != nil {
		t.Fatal(err)
	}
	out, err := v.eng.Invoke(context.Background(), "floor", reflex.Inbound{Payload: []byte("same")})
	if err != nil || string(out.Result) != "same" {
		t.Fatal(out, err)
	}
	if _, err := v.eng.Deploy(context.Background(), []reflex.Deployment{{Spec: function.Spec{Name: "x", Builtin: "shell"}}}, nil); err == nil {
		t.Fatal("unknown builtin accepted")
	}
}
