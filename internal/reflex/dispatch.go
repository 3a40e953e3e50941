package reflex

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/function"
	"github.com/flick-edge/flick/internal/wasm"
)

// Errors a submitter sees.
var (
	ErrOverloaded = errors.New("function queue is full")
	ErrDropped    = errors.New("event dropped: a newer event took its place (overflow drop-oldest)")
	ErrStopped    = errors.New("function was removed or the daemon is stopping")
)

// Inbound is one event as it arrives.
type Inbound struct {
	Source          string // mqtt, http, every, invoke
	Topic           string // MQTT topic or HTTP path
	Payload         []byte
	ContentType     string
	ResponseTopic   string // MQTT 5 request/response
	CorrelationData []byte
	Received        time.Time
}

// Outcome is what became of one event for one function.
type Outcome struct {
	Function  string        `json:"function"`
	EventID   string        `json:"eventId"`
	Status    string        `json:"status"` // ok, error, timeout, trap, output-limit, dropped, rejected
	Result    []byte        `json:"-"`
	Log       []byte        `json:"-"`
	Error     string        `json:"error,omitempty"`
	ExitCode  uint32        `json:"exitCode,omitempty"`
	Attempts  int           `json:"attempts"`
	QueueWait time.Duration `json:"queueWait"`
	Start     time.Duration `json:"instantiate"`
	Run       time.Duration `json:"run"`
	Total     time.Duration `json:"total"`
	Err       error         `json:"-"`
}

type job struct {
	in       Inbound
	segments []string
	id       string
	queued   time.Time
	done     chan Outcome // nil: nobody waits
}

type fnState struct {
	e    *Engine
	spec function.Spec
	mod  runner
	q    *queue
	m    *fnMetrics
	logs *ring

	running  atomic.Int64
	invoked  atomic.Uint64
	failed   atomic.Uint64
	dropped  atomic.Uint64
	rejected atomic.Uint64

	stopTimers chan struct{}
	wg         sync.WaitGroup
	once       sync.Once
}

// runner runs one event on a fresh instance: a Wasm module, or for
// benchmarks a builtin native handler on the same path.
type runner interface {
	Run(context.Context, wasm.Invocation) (wasm.Result, error)
	Close()
}

// builtinEcho is the native floor the benchmark compares Wasm against: it
// returns the payload as the result, with no instance at all.
type builtinEcho struct{}

func (builtinEcho) Run(_ context.Context, inv wasm.Invocation) (wasm.Result, error) {
	return wasm.Result{Stdout: append([]byte(nil), inv.Stdin...)}, nil
}
func (builtinEcho) Close() {}

func newFnState(e *Engine, sp function.Spec, mod runner) *fnState {
	return &fnState{e: e, spec: sp, mod: mod, q: newQueue(sp.Queue), m: e.obs.forFunction(sp.Name),
		logs: e.obs.logsFor(sp.Name), stopTimers: make(chan struct{})}
}

func (st *fnState) start() {
	for range st.spec.Concurrency {
		st.wg.Add(1)
		go st.worker()
	}
	for _, t := range st.spec.Triggers {
		if t.Kind == function.TriggerEvery {
			st.wg.Add(1)
			go st.ticker(t.Period)
		}
	}
}

// stop closes the queue, lets workers drain it, then frees the module.
func (st *fnState) stop() {
	st.once.Do(func() {
		close(st.stopTimers)
		st.q.close()
		st.wg.Wait()
		st.mod.Close()
	})
}

func (st *fnState) status() Status {
	return Status{Spec: st.spec, Queued: st.q.len(), Running: st.running.Load(), Invoked: st.invoked.Load(),
		Failed: st.failed.Load(), Dropped: st.dropped.Load(), Rejected: st.rejected.Load()}
}

func (st *fnState) ticker(every time.Duration) {
	defer st.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-st.stopTimers:
			return
		case now := <-t.C:
			payload, _ := json.Marshal(map[string]any{"time": now.UTC().Format(time.RFC3339Nano), "period": every.String()})
			st.submit(Inbound{Source: "every", Topic: "every:" + every.String(), Payload: payload,
				ContentType: "application/json", Received: now}, nil, false)
		}
	}
}

// submit queues an event. With wait, the returned channel yields its Outcome.
func (st *fnState) submit(in Inbound, segs []string, wait bool) (<-chan Outcome, error) {
	j := &job{in: in, segments: segs, id: st.e.nextID(), queued: time.Now()}
	if wait {
		j.done = make(chan Outcome, 1)
	}
	evicted, ok := st.q.push(j, st.spec.Overflow == function.OverflowDropOldest)
	if evicted != nil {
		st.dropped.Add(1)
		st.m.dropped.Inc()
		st.e.obs.emit(Event{Type: "drop", Function: st.spec.Name, EventID: evicted.id, Topic: evicted.in.Topic})
		if evicted.done != nil {
			evicted.done <- Outcome{Function: st.spec.Name, EventID: evicted.id, Status: "dropped", Err: ErrDropped, Error: ErrDropped.Error()}
		}
	}
	if !ok {
		st.rejected.Add(1)
		st.m.rejected.Inc()
		st.e.obs.emit(Event{Type: "reject", Function: st.spec.Name, EventID: j.id, Topic: in.Topic})
		return nil, errdefs.NewResourceExhausted(fmt.Errorf("function %s: %w (%d queued, overflow %s): slow down, or raise --queue/--concurrency", st.spec.Name, ErrOverloaded, st.spec.Queue, st.spec.Overflow))
	}
	st.m.queued.Inc()
	return j.done, nil
}

func (st *fnState) worker() {
	defer st.wg.Done()
	for {
		j, ok := st.q.pop()
		if !ok {
			return
		}
		st.m.queued.Dec()
		st.running.Add(1)
		out := st.handle(j)
		st.running.Add(-1)
		if j.done != nil {
			j.done <- out
		}
	}
}

func (st *fnState) env(j *job, attempt int) []string {
	env := make([]string, 0, 10+len(st.spec.Env)+len(j.segments))
	for k, v := range st.spec.Env {
		env = append(env, k+"="+v)
	}
	env = append(env,
		"FLICK_FUNCTION="+st.spec.Name,
		"FLICK_TRIGGER="+j.in.Source,
		"FLICK_TOPIC="+j.in.Topic,
		"FLICK_MESSAGE_ID="+j.id,
		"FLICK_TIMESTAMP="+j.in.Received.UTC().Format(time.RFC3339Nano),
		"FLICK_ATTEMPT="+strconv.Itoa(attempt+1),
	)
	if j.in.ContentType != "" {
		env = append(env, "FLICK_CONTENT_TYPE="+j.in.ContentType)
	}
	if len(j.segments) > 0 {
		env = append(env, "FLICK_SEGMENTS="+strings.Join(j.segments, "\x1f"))
		for i, s := range j.segments {
			env = append(env, "FLICK_SEGMENT_"+strconv.Itoa(i+1)+"="+s)
		}
	}
	return env
}

func (st *fnState) handle(j *job) Outcome {
	out := Outcome{Function: st.spec.Name, EventID: j.id, QueueWait: time.Since(j.queued)}
	st.m.queueWait.Update(out.QueueWait.Seconds())
	var res wasm.Result
	var err error
	for attempt := 0; ; attempt++ {
		out.Attempts = attempt + 1
		res, err = st.mod.Run(st.e.ctx, wasm.Invocation{
			Name: st.spec.Name, Stdin: j.in.Payload, Env: st.env(j, attempt),
			Timeout: st.spec.Timeout, MaxStdout: st.spec.MaxOutput,
		})
		st.invoked.Add(1)
		st.m.instantiate.Update(res.Instantiate.Seconds())
		st.m.run.Update(res.Run.Seconds())
		out.Start += res.Instantiate
		out.Run += res.Run
		st.logs.addStderr(j.id, res.Stderr)
		if err == nil {
			break
		}
		st.m.count(err)
		if attempt >= st.spec.Retries || st.e.ctx.Err() != nil {
			break
		}
		st.m.retries.Inc()
		st.logs.add(j.id, "flick", fmt.Sprintf("attempt %d failed: %v; retrying", attempt+1, err))
		backoff := time.Duration(10<<attempt) * time.Millisecond
		select {
		case <-time.After(min(backoff, time.Second)):
		case <-st.e.ctx.Done():
		}
	}
	out.Total = time.Since(j.queued)
	st.m.total.Update(out.Total.Seconds())
	out.Result, out.Log = res.Stdout, res.Stderr
	if err != nil {
		st.failed.Add(1)
		out.Err = err
		out.Error = err.Error()
		out.Status = statusOf(err)
		out.ExitCode = res.ExitCode
		st.m.outcome(out.Status).Inc()
		st.logs.add(j.id, "flick", fmt.Sprintf("event %s on %s failed after %d attempt(s): %v", j.id, j.in.Topic, out.Attempts, err))
		st.e.obs.emit(Event{Type: out.Status, Function: st.spec.Name, EventID: j.id, Topic: j.in.Topic, Duration: out.Total, Detail: out.Error})
		st.deadLetter(j, out)
		return out
	}
	out.Status = "ok"
	st.m.outcome("ok").Inc()
	st.e.obs.emit(Event{Type: "done", Function: st.spec.Name, EventID: j.id, Topic: j.in.Topic, Duration: out.Total})
	st.reply(j, out)
	return out
}

func statusOf(err error) string {
	switch {
	case errors.Is(err, wasm.ErrTimeout):
		return "timeout"
	case errors.Is(err, wasm.ErrTrap):
		return "trap"
	case errors.Is(err, wasm.ErrOutput):
		return "output-limit"
	}
	return "error"
}

// reply publishes the result to the reply template and, for MQTT 5
// requests, to the response topic with the correlation data echoed.
func (st *fnState) reply(j *job, out Outcome) {
	pub := st.e.cfg.Publish
	if pub == nil {
		return
	}
	props := map[string]string{"flick-function": st.spec.Name, "flick-event": j.id}
	if st.spec.Reply != "" && j.in.Source != "http" {
		topic, err := function.ExpandReply(st.spec.Reply, j.in.Topic, j.segments)
		if err != nil {
			st.logs.add(j.id, "flick", "result not published: "+err.Error())
		} else if err := pub.Publish(Message{Topic: topic, Payload: out.Result, QoS: 1, CorrelationData: j.in.CorrelationData, UserProperties: props}); err != nil {
			st.logs.add(j.id, "flick", "publish result: "+err.Error())
		}
	}
	if j.in.ResponseTopic != "" {
		if err := function.ValidateTopic(j.in.ResponseTopic); err != nil {
			st.logs.add(j.id, "flick", "response topic refused: "+err.Error())
			return
		}
		if err := pub.Publish(Message{Topic: j.in.ResponseTopic, Payload: out.Result, QoS: 1, CorrelationData: j.in.CorrelationData, UserProperties: props}); err != nil {
			st.logs.add(j.id, "flick", "publish response: "+err.Error())
		}
	}
}

// DeadLetter is what a failed event becomes on the dead-letter topic.
type DeadLetter struct {
	Function string    `json:"function"`
	EventID  string    `json:"eventId"`
	Topic    string    `json:"topic"`
	Trigger  string    `json:"trigger"`
	Payload  string    `json:"payload"` // base64
	Status   string    `json:"status"`
	Error    string    `json:"error"`
	ExitCode uint32    `json:"exitCode,omitempty"`
	Attempts int       `json:"attempts"`
	Log      string    `json:"log,omitempty"`
	Time     time.Time `json:"time"`
}

func (st *fnState) deadLetter(j *job, out Outcome) {
	if st.spec.DeadLetter == "" || st.e.cfg.Publish == nil {
		return
	}
	log := out.Log
	if len(log) > 4096 {
		log = log[len(log)-4096:]
	}
	b, _ := json.Marshal(DeadLetter{Function: st.spec.Name, EventID: j.id, Topic: j.in.Topic, Trigger: j.in.Source,
		Payload: base64.StdEncoding.EncodeToString(j.in.Payload), Status: out.Status, Error: out.Error,
		ExitCode: out.ExitCode, Attempts: out.Attempts, Log: string(log), Time: time.Now().UTC()})
	if err := st.e.cfg.Publish.Publish(Message{Topic: st.spec.DeadLetter, Payload: b, QoS: 1, ContentType: "application/json"}); err != nil {
		st.logs.add(j.id, "flick", "dead-letter publish: "+err.Error())
		return
	}
	st.m.deadLetters.Inc()
}

func (e *Engine) nextID() string {
	return e.boot + "-" + strconv.FormatUint(e.seq.Add(1), 10)
}

// Dispatch hands an MQTT message to every function bound to its topic.
// It returns a wait function when the sender should be answered only once
// the events are done (QoS 1/2), or nil when nothing matched or nobody
// waits. A full queue under the reject policy is an error wrapping
// ErrOverloaded, returned at once even when other functions took the event
// (then with their wait function too).
func (e *Engine) Dispatch(in Inbound, wait bool) (func(ctx context.Context) error, error) {
	rs := *e.routes.Load()
	var chans []<-chan Outcome
	var firstErr error
	for _, r := range rs {
		segs, ok := function.Match(r.filter, in.Topic)
		if !ok {
			continue
		}
		st, err := e.state(r.fn)
		if err != nil {
			continue
		}
		if in.Received.IsZero() {
			in.Received = time.Now()
		}
		c, err := st.submit(in, segs, wait)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if c != nil {
			chans = append(chans, c)
		}
	}
	if len(chans) == 0 {
		return nil, firstErr
	}
	return func(ctx context.Context) error {
		for _, c := range chans {
			select {
			case <-c:
			case <-ctx.Done():
				return ctx.Err()
			case <-e.ctx.Done():
				return ErrStopped
			}
		}
		return nil
	}, firstErr
}

// Invoke runs one event through a function's queue and waits for the
// outcome (flick fn invoke, HTTP triggers).
func (e *Engine) Invoke(ctx context.Context, name string, in Inbound) (Outcome, error) {
	st, err := e.state(name)
	if err != nil {
		return Outcome{}, err
	}
	if in.Received.IsZero() {
		in.Received = time.Now()
	}
	c, err := st.submit(in, nil, true)
	if err != nil {
		return Outcome{}, err
	}
	select {
	case out := <-c:
		return out, nil
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
}

// HTTPFunction returns the function bound to an HTTP trigger path.
func (e *Engine) HTTPFunction(path string) (string, bool) {
	n, ok := (*e.http.Load())[path]
	return n, ok
}
