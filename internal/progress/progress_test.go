package progress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/jsonstream"

	"github.com/flick-edge/flick/internal/errdefs"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	wantDigest = "sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d"
	wantRef    = "docker.io/library/alpine:3.20"
)

func stream(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ptr(b bool) *bool { return &b }

// render runs Render with a deadline, failing the test on a hang.
func render(t *testing.T, in []byte, opts Options) (string, Result, error) {
	t.Helper()
	var out bytes.Buffer
	type ret struct {
		res Result
		err error
	}
	done := make(chan ret, 1)
	go func() {
		res, err := Render(context.Background(), bytes.NewReader(in), &out, opts)
		done <- ret{res, err}
	}()
	select {
	case r := <-done:
		return out.String(), r.res, r.err
	case <-time.After(20 * time.Second):
		t.Fatal("Render hung")
		return "", Result{}, nil
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update to rewrite)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestPlainSuccess(t *testing.T) {
	out, res, err := render(t, stream(t, "pull-success.jsonl"), Options{ForceTTY: ptr(false)})
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{Digest: wantDigest, Status: "Downloaded newer image for " + wantRef, Ref: wantRef}) {
		t.Errorf("Result = %+v", res)
	}
	golden(t, "pull-success.plain.golden", out)

	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if lines[0] != "3.20: Pulling from library/alpine" {
		t.Errorf("first line %q", lines[0])
	}
	if lines[len(lines)-2] != "Digest: "+wantDigest || lines[len(lines)-1] != "Status: Downloaded newer image for "+wantRef {
		t.Errorf("last lines %q", lines[len(lines)-2:])
	}
	// Each plain status once per layer; progress at most once per 10%.
	count := map[string]int{}
	progress := regexp.MustCompile(`^([0-9a-f]{12}): (\w+) \S+/\S+ \((\d+)%\)$`)
	for _, l := range lines {
		if m := progress.FindStringSubmatch(l); m != nil {
			count[m[1]+" "+m[2]]++
			continue
		}
		count[l]++
	}
	for _, id := range []string{"c6a83fedfae6", "0f9d52ad1a42", "5b0bd9f2e3a4"} {
		for _, st := range []string{"Pulling fs layer", "Verifying Checksum", "Download complete", "Pull complete"} {
			if n := count[id+": "+st]; n != 1 {
				t.Errorf("%q printed %d times", id+": "+st, n)
			}
		}
		for _, st := range []string{"Downloading", "Extracting"} {
			if n := count[id+" "+st]; n < 2 || n > 11 {
				t.Errorf("%s %s: %d progress lines", id, st, n)
			}
		}
	}
	if !strings.Contains(out, "c6a83fedfae6: Downloading 3.624MB/3.624MB (100%)\n") {
		t.Error("no human-readable 100% line")
	}
	if len(lines) >= 79 {
		t.Errorf("%d lines for 79 messages: progress not thinned", len(lines))
	}
}

func TestPlainUpToDate(t *testing.T) {
	out, res, err := render(t, stream(t, "pull-uptodate.jsonl"), Options{ForceTTY: ptr(false)})
	if err != nil {
		t.Fatal(err)
	}
	want := "3.20: Pulling from library/alpine\nDigest: " + wantDigest + "\nStatus: Image is up to date for " + wantRef + "\n"
	if out != want {
		t.Errorf("got %q\nwant %q", out, want)
	}
	if res.Ref != wantRef || res.Status != "Image is up to date for "+wantRef || res.Digest != wantDigest {
		t.Errorf("Result = %+v", res)
	}
}

func TestPlainError(t *testing.T) {
	out, _, err := render(t, stream(t, "pull-error.jsonl"), Options{})
	if err == nil || err.Error() != "failed to register layer: unexpected EOF" {
		t.Fatalf("err = %v", err)
	}
	var je *jsonstream.Error
	if !errors.As(err, &je) {
		t.Errorf("%T is not a *jsonstream.Error", err)
	}
	want := "latest: Pulling from library/busybox\n" +
		"9ad63333ebc9: Pulling fs layer\n" +
		"a1b2c3d4e5f6: Already exists\n" +
		"9ad63333ebc9: Downloading 32.77kB/2.152MB (1%)\n" +
		"9ad63333ebc9: Downloading 1.049MB/2.152MB (48%)\n"
	if out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
}

func TestErrorForms(t *testing.T) {
	tests := []struct {
		in    string
		msg   string
		class errdefs.Class
	}{
		{`{"errorDetail":{"code":404,"message":"manifest unknown"},"error":"manifest unknown"}`, "manifest unknown", errdefs.NotFound},
		{`{"errorDetail":{"code":401,"message":"denied"}}`, "denied", errdefs.Unauthorized},
		{`{"error":"legacy only"}`, "legacy only", errdefs.Unknown},
		{`{"errorDetail":{"message":"detail wins"},"error":"legacy"}`, "detail wins", errdefs.Unknown},
		{`{"errorDetail":{}}`, "unknown error (empty errorDetail)", errdefs.Unknown},
	}
	for _, tc := range tests {
		_, _, err := render(t, []byte(tc.in), Options{})
		if err == nil || err.Error() != tc.msg || errdefs.ClassOf(err) != tc.class {
			t.Errorf("%s: err %v (%v), want %q (%v)", tc.in, err, errdefs.ClassOf(err), tc.msg, tc.class)
		}
	}
}

func TestQuiet(t *testing.T) {
	out, res, err := render(t, stream(t, "pull-success.jsonl"), Options{Quiet: true})
	if err != nil || out != wantRef+"\n" || res.Ref != wantRef {
		t.Errorf("quiet success: %q, %+v, %v", out, res, err)
	}
	out, _, err = render(t, stream(t, "pull-uptodate.jsonl"), Options{Quiet: true, ForceTTY: ptr(true)})
	if err != nil || out != wantRef+"\n" {
		t.Errorf("quiet up to date: %q, %v", out, err)
	}
	out, _, err = render(t, stream(t, "pull-error.jsonl"), Options{Quiet: true})
	if err == nil || out != "" {
		t.Errorf("quiet error: %q, %v", out, err)
	}
}

func TestJSON(t *testing.T) {
	in := stream(t, "pull-success.jsonl")
	out, res, err := render(t, in, Options{JSON: true, Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	if out != string(in) {
		t.Error("JSON mode did not copy the stream verbatim")
	}
	if res.Ref != wantRef || res.Digest != wantDigest {
		t.Errorf("Result = %+v", res)
	}

	// The error line is copied, nothing after it.
	errIn := stream(t, "pull-error.jsonl")
	out, _, err = render(t, errIn, Options{JSON: true})
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(string(errIn), "\n")
	if want := strings.Join(lines[:6], "\n") + "\n"; out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}

	// Pretty-printed and concatenated input comes out one value per line.
	pretty := "{\n  \"status\": \"Pulling fs layer\",\n  \"id\": \"abc\"\n}{\"status\":\"Digest: x\"}\n\n{\"status\":\"Status: ok for r\"}"
	out, res, err = render(t, []byte(pretty), Options{JSON: true})
	want := "{\"status\":\"Pulling fs layer\",\"id\":\"abc\"}\n{\"status\":\"Digest: x\"}\n{\"status\":\"Status: ok for r\"}\n"
	if err != nil || out != want || res.Ref != "r" {
		t.Errorf("got %q, %+v, %v", out, res, err)
	}
}

func TestTTYForced(t *testing.T) {
	out, res, err := render(t, stream(t, "pull-success.jsonl"), Options{ForceTTY: ptr(true)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ref != wantRef {
		t.Errorf("Result = %+v", res)
	}
	if !strings.HasPrefix(out, "3.20: Pulling from library/alpine\n") {
		t.Errorf("header missing: %q", out[:min(len(out), 80)])
	}
	footer := "Digest: " + wantDigest + "\nStatus: Downloaded newer image for " + wantRef + "\n"
	if !strings.HasSuffix(out, footer) {
		t.Errorf("footer missing; output ends %q", out[max(0, len(out)-300):])
	}
	// The last frame drawn shows every layer complete.
	last := lastFrame(out[:len(out)-len(footer)])
	for _, id := range []string{"c6a83fedfae6", "0f9d52ad1a42", "5b0bd9f2e3a4"} {
		if !strings.Contains(last, id+": Pull complete") {
			t.Errorf("last frame lacks %s: Pull complete:\n%s", id, last)
		}
	}
}

// lastFrame returns what follows the last cursor-up escape.
func lastFrame(s string) string {
	if i := strings.LastIndex(s, "\x1b[J"); i >= 0 {
		return s[i+3:]
	}
	return s
}

func TestTTYForcedUpToDateAndError(t *testing.T) {
	out, _, err := render(t, stream(t, "pull-uptodate.jsonl"), Options{ForceTTY: ptr(true)})
	want := "3.20: Pulling from library/alpine\nDigest: " + wantDigest + "\nStatus: Image is up to date for " + wantRef + "\n"
	if err != nil || out != want {
		t.Errorf("up to date: %q, %v", out, err)
	}
	out, _, err = render(t, stream(t, "pull-error.jsonl"), Options{ForceTTY: ptr(true)})
	if err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("err = %v", err)
	}
	if !strings.Contains(out, "9ad63333ebc9: Downloading") {
		t.Errorf("output: %q", out)
	}
}

// slowReader hands out one line at a time with a pause, so the TTY renderer
// refreshes while messages arrive.
type slowReader struct {
	r     *bufio.Reader
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	line, err := s.r.ReadBytes('\n')
	time.Sleep(s.pause)
	return copy(p, line), err
}

func TestTTYForcedSlow(t *testing.T) {
	r := &slowReader{r: bufio.NewReader(bytes.NewReader(stream(t, "pull-success.jsonl"))), pause: 5 * time.Millisecond}
	var out bytes.Buffer
	res, err := Render(context.Background(), r, &out, Options{ForceTTY: ptr(true)})
	if err != nil || res.Ref != wantRef {
		t.Fatalf("%+v, %v", res, err)
	}
	if s := out.String(); !regexp.MustCompile(`[0-9a-f]{12}: (Downloading|Extracting) \[=*>? *\] \d`).MatchString(s) || !strings.Contains(s, "\x1b[") {
		t.Errorf("no progress bar or no redraw:\n%q", s[:min(2000, len(s))])
	}
}

func TestCancel(t *testing.T) {
	for _, tty := range []bool{false, true} {
		pr, pw := io.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			_, _ = io.WriteString(pw, `{"status":"Pulling fs layer","id":"abc"}`+"\n")
			time.Sleep(50 * time.Millisecond)
			cancel()
		}()
		var out bytes.Buffer
		done := make(chan error, 1)
		go func() {
			_, err := Render(ctx, pr, &out, Options{ForceTTY: ptr(tty)})
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("tty=%v: err = %v", tty, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("tty=%v: Render ignored cancellation", tty)
		}
		pw.Close()
	}
}

func TestBadStreams(t *testing.T) {
	tests := map[string]string{
		"not json":  "hello\n",
		"truncated": `{"status":"Downloading","id":"ab`,
		"not obj":   `[1,2]`,
		"bad field": `{"status":5}`,
	}
	for name, in := range tests {
		for _, tty := range []bool{false, true} {
			_, _, err := render(t, []byte(in), Options{ForceTTY: ptr(tty)})
			if err == nil || !strings.Contains(err.Error(), "reading message stream") {
				t.Errorf("%s (tty=%v): err = %v", name, tty, err)
			}
		}
	}
	// An empty stream is fine.
	if out, res, err := render(t, nil, Options{}); err != nil || out != "" || res != (Result{}) {
		t.Errorf("empty: %q %+v %v", out, res, err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriteError(t *testing.T) {
	_, err := Render(context.Background(), bytes.NewReader(stream(t, "pull-uptodate.jsonl")), failWriter{}, Options{})
	if err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Errorf("err = %v", err)
	}
}

func TestStreamField(t *testing.T) {
	in := `{"stream":"Step 1/2 : FROM alpine\n"}` + "\n" + `{"stream":" ---\u003e abc\n"}`
	out, _, err := render(t, []byte(in), Options{})
	if err != nil || out != "Step 1/2 : FROM alpine\n ---> abc\n" {
		t.Errorf("%q, %v", out, err)
	}
}

func TestPlainUnknownTotal(t *testing.T) {
	in := `{"status":"Delta","progressDetail":{"current":100},"id":"l1"}
{"status":"Delta","progressDetail":{"current":2000},"id":"l1"}
{"status":"Delta applied","progressDetail":{},"id":"l1"}
{"status":"Delta applied","progressDetail":{},"id":"l1"}
`
	out, _, err := render(t, []byte(in), Options{ForceTTY: ptr(false)})
	if err != nil || out != "l1: Delta 100B\nl1: Delta applied\n" {
		t.Errorf("%q, %v", out, err)
	}
}

func TestHelpers(t *testing.T) {
	if percent(1<<62, 1<<62) != 100 || percent(5, 0) != 0 || percent(50, 100) != 50 || percent(200, 100) != 100 {
		t.Error("percent")
	}
	if decile(99, 100) != 9 || decile(100, 100) != 10 {
		t.Error("decile")
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a file is a terminal")
	}
}
