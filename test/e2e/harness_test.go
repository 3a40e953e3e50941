// Package e2e drives the real flick binary against the real docker-registry and
// the real docker CLI. Build the binary first (make test-e2e does): FLICK_BIN
// names it, default ../../bin/flick.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func flickBin(t testing.TB) string {
	t.Helper()
	p := os.Getenv("FLICK_BIN")
	if p == "" {
		p, _ = filepath.Abs("../../bin/flick")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("flick binary not found at %s: run 'make build' (or make test-e2e)", p)
	}
	return p
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlay-ready extraction with ownership, cgroups)")
	}
}

// Daemon is a flick daemon process owned by a test.
type Daemon struct {
	t        testing.TB
	DataRoot string
	Socket   string
	cmd      *exec.Cmd
	log      *bytes.Buffer
	extra    []string
	wrap     []string
	done     chan error
}

type daemonOpt func(*Daemon)

func withArgs(a ...string) daemonOpt    { return func(d *Daemon) { d.extra = append(d.extra, a...) } }
func withWrapper(w ...string) daemonOpt { return func(d *Daemon) { d.wrap = w } }

// startDaemon starts `flick daemon` on a private data root and socket and waits
// until it answers /_ping. Cleanup stops it.
func startDaemon(t testing.TB, opts ...daemonOpt) *Daemon {
	t.Helper()
	dir := t.TempDir()
	d := &Daemon{t: t, DataRoot: filepath.Join(dir, "root"), Socket: filepath.Join(dir, "flick.sock"), log: &bytes.Buffer{}}
	for _, o := range opts {
		o(d)
	}
	d.start()
	t.Cleanup(d.Stop)
	return d
}

func (d *Daemon) args() []string {
	a := []string{"daemon", "--data-root", d.DataRoot, "-H", "unix://" + d.Socket, "--config-file", "/dev/null", "--log-level", "debug"}
	// Private ports: the broker and the HTTP trigger listener on free
	// loopback ports (read back from /flick/v1/info), metrics on the socket.
	// No bridge: tests do not change the host's network; the bridge test
	// runs its daemon in a network namespace of its own.
	defaults := map[string]string{"--mqtt-listen": "127.0.0.1:0", "--http-listen": "127.0.0.1:0", "--metrics-addr": "", "--bridge": "none"}
	for _, x := range d.extra {
		delete(defaults, strings.SplitN(x, "=", 2)[0])
	}
	for _, k := range []string{"--mqtt-listen", "--http-listen", "--metrics-addr", "--bridge"} {
		if v, ok := defaults[k]; ok {
			a = append(a, k+"="+v)
		}
	}
	return append(a, d.extra...)
}

func (d *Daemon) start() {
	d.t.Helper()
	argv := append(append([]string{}, d.wrap...), flickBin(d.t))
	argv = append(argv, d.args()...)
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout = d.log
	d.cmd.Stderr = d.log
	d.cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(filepath.Dir(d.Socket), "docker-config"))
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			d.done <- err
			d.t.Fatalf("daemon exited early (%v):\n%s", err, d.log.String())
		default:
		}
		c := d.httpClient()
		if resp, err := c.Get("http://flick/_ping"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("daemon did not answer within 30s:\n%s", d.log.String())
}

func (d *Daemon) httpClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", d.Socket)
	}}}
}

// Stop sends SIGTERM and waits.
func (d *Daemon) Stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("daemon did not stop on SIGTERM within 20s")
	}
	d.cmd = nil
}

// Kill sends SIGKILL, like a crash.
func (d *Daemon) Kill() {
	d.cmd.Process.Kill()
	<-d.done
	d.cmd = nil
}

// Restart starts the daemon again on the same data root and socket.
func (d *Daemon) Restart() {
	d.Stop()
	d.log.Reset()
	d.start()
}

// Host is the -H value for clients.
func (d *Daemon) Host() string { return "unix://" + d.Socket }

// Log is what the daemon printed.
func (d *Daemon) Log() string { return d.log.String() }

// Result is a finished command.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

func run(t testing.TB, env []string, name string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.Env = append(os.Environ(), env...)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return Result{Stdout: so.String(), Stderr: se.String(), Code: code}
}

// flick runs the flick CLI against d.
func (d *Daemon) flick(t testing.TB, args ...string) Result {
	t.Helper()
	return run(t, []string{"DOCKER_CONFIG=" + filepath.Join(filepath.Dir(d.Socket), "docker-config")}, flickBin(t), append([]string{"-H", d.Host()}, args...)...)
}

// mustFlick runs the CLI and fails the test on a non-zero exit.
func (d *Daemon) mustFlick(t testing.TB, args ...string) Result {
	t.Helper()
	r := d.flick(t, args...)
	if r.Code != 0 {
		t.Fatalf("flick %s: %s\ndaemon log:\n%s", strings.Join(args, " "), r, tailString(d.Log(), 4000))
	}
	return r
}

// docker runs the real docker CLI against d.
func (d *Daemon) docker(t testing.TB, args ...string) Result {
	t.Helper()
	bin, err := exec.LookPath("docker")
	if err != nil {
		t.Fatal("docker CLI not found: apt-get install docker.io")
	}
	return run(t, []string{"DOCKER_HOST=" + d.Host(), "DOCKER_CONFIG=" + filepath.Join(filepath.Dir(d.Socket), "docker-config")}, bin, args...)
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// dirEntries lists names in a directory (empty if absent).
func dirEntries(t testing.TB, p string) []string {
	ents, err := os.ReadDir(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
