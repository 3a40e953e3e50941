// Command apirun times `run --rm IMAGE true` through the Docker Engine API
// from one long-lived client process, for the start benchmark
// (bench/start.sh): the engine's own start-to-exit latency, without the
// start of a client process (a Go CLI costs ~6 ms of that on this VM, curl
// ~3). Each run is what `flick run --rm` and `docker run --rm` send: create
// (AutoRemove, the given network mode), attach (hijacked stream), wait
// (condition "removed"), start, the stream to its end, the wait's status.
// It works against any engine speaking the API: Flick's socket or dockerd's.
//
//	apirun -socket /run/flick/flick.sock -image 127.0.0.1:5000/bench/busybox:1 -warmup 3 -runs 30
//
// With -gap, each run starts that long after the previous one ended, on an
// engine that has done the previous container's background work (its
// removal, a warm monitor's refill); without, runs go back to back.
//
// It prints one line per timed run: its latency in microseconds.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"time"
)

func main() {
	socket := flag.String("socket", "", "the engine's unix socket (required)")
	image := flag.String("image", "", "image to run (required)")
	network := flag.String("network", "none", "network mode")
	version := flag.String("api", "1.41", "API version in the request paths")
	warmup := flag.Int("warmup", 3, "untimed runs first")
	runs := flag.Int("runs", 30, "timed runs")
	phases := flag.Bool("phases", false, "also print to stderr the median time each step of a run took")
	timeout := flag.Duration("timeout", 30*time.Second, "give up on a run that takes longer")
	gap := flag.Duration("gap", 0, "idle time before each run (0: back to back)")
	flag.Parse()
	if *socket == "" || *image == "" || *runs < 1 || *warmup < 0 {
		fmt.Fprintln(os.Stderr, "apirun: -socket and -image are required, -runs at least 1")
		os.Exit(2)
	}
	e := &engine{socket: *socket, base: "/v" + *version, timeout: *timeout}
	e.http = &http.Client{Timeout: *timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", *socket)
		},
		MaxIdleConnsPerHost: 4,
	}}
	steps := map[string][]time.Duration{}
	for i := 0; i < *warmup+*runs; i++ {
		time.Sleep(*gap)
		t0 := time.Now()
		e.marks = e.marks[:0]
		if err := e.run(*image, *network); err != nil {
			fmt.Fprintf(os.Stderr, "apirun: run %d: %v\n", i, err)
			os.Exit(1)
		}
		if i >= *warmup {
			fmt.Println(time.Since(t0).Microseconds())
			last := t0
			for _, m := range e.marks {
				steps[m.step] = append(steps[m.step], m.at.Sub(last))
				last = m.at
			}
		}
	}
	if *phases {
		for _, m := range e.marks {
			d := steps[m.step]
			slices.Sort(d)
			med := d[len(d)/2]
			if len(d)%2 == 0 {
				med = (d[len(d)/2-1] + d[len(d)/2]) / 2
			}
			fmt.Fprintf(os.Stderr, "%-12s median %6.2f ms\n", m.step, float64(med.Microseconds())/1000)
		}
	}
}

type mark struct {
	step string
	at   time.Time
}

type engine struct {
	socket, base string
	http         *http.Client
	timeout      time.Duration
	marks        []mark // when each step of the current run ended
}

func (e *engine) mark(step string) { e.marks = append(e.marks, mark{step, time.Now()}) }

func (e *engine) run(image, network string) error {
	body, _ := json.Marshal(map[string]any{
		"Image": image, "Cmd": []string{"true"}, "AttachStdout": true, "AttachStderr": true,
		"HostConfig": map[string]any{"AutoRemove": true, "NetworkMode": network},
	})
	var created struct {
		ID string `json:"Id"`
	}
	if err := e.call("POST", "/containers/create", body, http.StatusCreated, &created); err != nil {
		return err
	}
	e.mark("create")
	stream, err := e.attach(created.ID)
	if err != nil {
		return err
	}
	defer stream.Close()
	e.mark("attach")
	wait, err := e.do("POST", "/containers/"+created.ID+"/wait?condition=removed", nil)
	if err != nil {
		return err
	}
	defer wait.Body.Close()
	if wait.StatusCode != http.StatusOK {
		return fmt.Errorf("wait: %s", wait.Status)
	}
	e.mark("wait")
	if err := e.call("POST", "/containers/"+created.ID+"/start", nil, http.StatusNoContent, nil); err != nil {
		return err
	}
	e.mark("start")
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return fmt.Errorf("attach stream: %w", err)
	}
	e.mark("stream-end")
	var st struct{ StatusCode int }
	if err := json.NewDecoder(wait.Body).Decode(&st); err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	e.mark("exit-status")
	if st.StatusCode != 0 {
		return fmt.Errorf("exit status %d", st.StatusCode)
	}
	return nil
}

func (e *engine) do(method, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequest(method, "http://engine"+e.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return e.http.Do(req)
}

func (e *engine) call(method, path string, body []byte, want int, out any) error {
	resp, err := e.do(method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// attach opens the container's output stream: the request on a connection
// of its own, upgraded to a raw stream as the docker CLI does it.
func (e *engine) attach(id string) (io.ReadCloser, error) {
	conn, err := net.Dial("unix", e.socket)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(e.timeout))
	fmt.Fprintf(conn, "POST %s/containers/%s/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: engine\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n", e.base, id)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("attach: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols { // asked for with Upgrade; both engines do it
		conn.Close()
		return nil, fmt.Errorf("attach: %s", resp.Status)
	}
	return struct {
		io.Reader
		io.Closer
	}{br, conn}, nil
}
