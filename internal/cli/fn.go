package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/flickapi"
	"github.com/flick-edge/flick/internal/fnimage"
	"github.com/flick-edge/flick/internal/function"
	"github.com/flick-edge/flick/internal/reflex"
	"github.com/spf13/cobra"
)

func (a *app) fnCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fn",
		Short: "Deploy and run WebAssembly functions bound to device events",
		Long: `Functions are WebAssembly modules (WASI preview 1 commands: C, Rust, Zig,
TinyGo or Go compiled to wasm32-wasi/wasip1). Each event starts a fresh,
sandboxed instance: the payload arrives on stdin, metadata in FLICK_*
environment variables, what the function prints on stdout is the result
(published to --reply), stderr is its log, and a non-zero exit or a trap is
an error (retried, then sent to --dead-letter). Instances have no
filesystem, no network and a memory cap.`,
		Example: `  flick fn deploy chime --wasm chime.wasm --on 'mqtt:home/+/button' --reply 'home/{1}/chime'
  mosquitto_pub -t home/hall/button -m press      # fires it
  flick fn invoke chime '{"press":"long"}'
  flick fn logs -f chime`,
	}
	cmd.AddCommand(a.fnDeployCmd(), a.fnListCmd(), a.fnInspectCmd(), a.fnRemoveCmd(), a.fnInvokeCmd(), a.fnLogsCmd(), a.fnPushCmd())
	return cmd
}

// specFlags are the deploy options, shared with apply's file keys.
type specFlags struct {
	image, wasm, reply, deadLetter, overflow string
	builtin                                  string
	timeout                                  time.Duration
	memory, maxOutput                        string
	on, env                                  []string
	concurrency, queue, retries              int
}

func (f *specFlags) spec(name string) (function.Spec, []byte, error) {
	sp := function.Spec{Name: name, Image: f.image, Builtin: f.builtin, Reply: f.reply, DeadLetter: f.deadLetter, Overflow: f.overflow,
		Timeout: f.timeout, Concurrency: f.concurrency, Queue: f.queue, Retries: f.retries, On: f.on}
	var err error
	if sp.Memory, err = parseBytes(f.memory, "--memory"); err != nil {
		return sp, nil, err
	}
	mo, err := parseBytes(f.maxOutput, "--max-output")
	if err != nil {
		return sp, nil, err
	}
	sp.MaxOutput = int(mo)
	if len(f.env) > 0 {
		sp.Env = map[string]string{}
		for _, kv := range f.env {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return sp, nil, usageError{fmt.Errorf("--env %q: want KEY=VALUE", kv)}
			}
			sp.Env[k] = v
		}
	}
	if f.builtin != "" {
		return sp, nil, nil
	}
	if (f.image == "") == (f.wasm == "") {
		return sp, nil, usageError{fmt.Errorf("give the module with exactly one of --wasm FILE or --image REF")}
	}
	var mod []byte
	if f.wasm != "" {
		if mod, err = os.ReadFile(f.wasm); err != nil {
			return sp, nil, errdefs.NewInvalidArgument(fmt.Errorf("read module: %w", err))
		}
	}
	return sp, mod, nil
}

func parseBytes(s, flag string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := units.RAMInBytes(s)
	if err != nil || n <= 0 {
		return 0, usageError{fmt.Errorf("%s %q: want a size like 16MiB", flag, s)}
	}
	return n, nil
}

func (a *app) fnDeployCmd() *cobra.Command {
	var f specFlags
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "deploy NAME (--wasm FILE | --image REF) --on TRIGGER... [OPTIONS]",
		Short: "Deploy a function (or replace it) and bind it to triggers",
		Long: `Deploy a function. The module is validated and compiled now, never on the
event path; a module that is not Wasm, imports anything but WASI preview 1,
or needs more memory than --memory is refused here with the reason.
Deploying an existing name replaces it; queued events of the old version
still run. Bindings survive daemon restarts and power cuts.

Triggers (--on, repeatable):
  mqtt:FILTER      a message on the embedded broker matching FILTER (+ and #);
                   QoS 1/2 senders are acknowledged once the event is done
  http:/PATH       a request to the daemon's --http-listen address at /PATH
                   (and /flick/v1/hooks/PATH on the API socket); the answer
                   is the result
  every:DURATION   a timer, e.g. every:30s

Results go to --reply, a topic template where {1}, {2}... are the levels
the filter's wildcards matched and {topic} the whole topic. MQTT 5 requests
with a response topic also get the result there, with their correlation
data. Each event sees FLICK_FUNCTION, FLICK_TRIGGER, FLICK_TOPIC,
FLICK_SEGMENT_1.., FLICK_MESSAGE_ID, FLICK_TIMESTAMP, FLICK_CONTENT_TYPE
and FLICK_ATTEMPT in its environment.`,
		Example: `  flick fn deploy chime --wasm chime.wasm --on 'mqtt:home/+/button' --reply 'home/{1}/chime'
  flick fn deploy report --image registry.lan:5000/fn/report:1.2 --on every:5m --reply reports/hall
  flick fn deploy door --wasm door.wasm --on http:/doorbell --timeout 50ms --memory 4MiB
  flick fn deploy ingest --wasm ingest.wasm --on 'mqtt:sensors/#' --concurrency 8 --queue 5000 \
      --overflow drop-oldest --retries 2 --dead-letter dead/ingest --env UNIT=celsius`,
		Args: exactArgs(1, "a function name, e.g. 'flick fn deploy chime --wasm chime.wasm --on mqtt:home/+/button'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			sp, mod, err := f.spec(args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var out function.Spec
			if err := c.JSON(cmd.Context(), http.MethodPost, flickapi.Prefix+"/functions", nil, flickapi.DeployRequest{Spec: sp, On: sp.On, Wasm: mod}, &out); err != nil {
				return err
			}
			if jsonOut {
				return printJSON(a.stdout, out)
			}
			fmt.Fprintf(a.stdout, "deployed %s (%s, %s)\n", out.Name, shortDigest(out.Module.String()), units.BytesSize(float64(out.ModuleSize)))
			for _, t := range out.Triggers {
				fmt.Fprintf(a.stdout, "  on %s\n", t)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.wasm, "wasm", "", "module file (.wasm, a WASI preview 1 command)")
	fl.StringVar(&f.image, "image", "", "module from a registry (a CNCF Wasm OCI artifact, see 'flick fn push')")
	fl.StringArrayVar(&f.on, "on", nil, "trigger: mqtt:FILTER, http:/PATH or every:DURATION (repeatable)")
	fl.StringVar(&f.reply, "reply", "", "topic for results; {1}.. are wildcard levels, {topic} the event topic")
	fl.DurationVar(&f.timeout, "timeout", function.DefaultTimeout, "wall-clock deadline per event; past it the instance is killed")
	fl.StringVar(&f.memory, "memory", "16MiB", "linear-memory cap per instance")
	fl.IntVar(&f.concurrency, "concurrency", function.DefaultConcurrency, "instances running at once")
	fl.IntVar(&f.queue, "queue", function.DefaultQueue, "events waiting beyond --concurrency")
	fl.StringVar(&f.overflow, "overflow", function.OverflowReject, "full queue: reject (MQTT 5 senders get 0x97, HTTP 429) or drop-oldest")
	fl.IntVar(&f.retries, "retries", 0, "retries after a failure (exit, trap, timeout), with back-off")
	fl.StringVar(&f.deadLetter, "dead-letter", "", "topic that receives failed events with the error and log attached")
	fl.StringArrayVar(&f.env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	fl.StringVar(&f.maxOutput, "max-output", "1MiB", "stdout cap per event; a function writing more is stopped")
	fl.BoolVar(&jsonOut, "json", false, "print the deployed spec as JSON")
	fl.StringVar(&f.builtin, "builtin", "", "run a native builtin instead of a module (echo: the benchmark's floor)")
	fl.MarkHidden("builtin")
	return cmd
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

func (a *app) fnListCmd() *cobra.Command {
	var jsonOut, quiet bool
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List deployed functions",
		Example: `  flick fn ls
  flick fn ls --json | jq '.[] | {name, invocations, errors}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var list []reflex.Status
			if err := c.JSON(cmd.Context(), http.MethodGet, flickapi.Prefix+"/functions", nil, nil, &list); err != nil {
				return err
			}
			if jsonOut {
				return printJSON(a.stdout, list)
			}
			if quiet {
				for _, s := range list {
					fmt.Fprintln(a.stdout, s.Name)
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTRIGGERS\tREPLY\tMODULE\tINVOKED\tERRORS\tDROPPED\tREJECTED\tQUEUED")
			for _, s := range list {
				var trig []string
				for _, t := range s.Triggers {
					trig = append(trig, t.String())
				}
				src := shortDigest(s.Module.String())
				if s.Image != "" {
					src = s.Image
					if i := strings.Index(src, "@"); i > 0 {
						src = src[:i]
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", s.Name, strings.Join(trig, ","), dash(s.Reply), src,
					s.Invoked, s.Failed, s.Dropped, s.Rejected, s.Queued)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print names only")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) fnInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME...",
		Short: "Show functions' full spec and counters as JSON",
		Args:  minArgs(1, "at least one function name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var out []reflex.Status
			for _, n := range args {
				var st reflex.Status
				if err := c.JSON(cmd.Context(), http.MethodGet, flickapi.Prefix+"/functions/"+url.PathEscape(n), nil, nil, &st); err != nil {
					return err
				}
				out = append(out, st)
			}
			return printJSON(a.stdout, out)
		},
	}
}

func (a *app) fnRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove functions and their bindings (queued events still run)",
		Args:    minArgs(1, "at least one function name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			for _, n := range args {
				if err := c.JSON(cmd.Context(), http.MethodDelete, flickapi.Prefix+"/functions/"+url.PathEscape(n), nil, nil, nil); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, n)
			}
			return nil
		},
	}
}

func (a *app) fnInvokeCmd() *cobra.Command {
	var jsonOut, showLog bool
	var topic, contentType string
	cmd := &cobra.Command{
		Use:   "invoke NAME [PAYLOAD|-]",
		Short: "Run a function once with a payload and print its result",
		Long: `Run one event through a function, as a trigger would (same queue, limits,
retries and dead letter), and print what it wrote to stdout. '-' reads the
payload from stdin. The exit code is non-zero when the function failed.`,
		Example: `  flick fn invoke chime press
  echo '{"t":21.5}' | flick fn invoke ingest - --topic sensors/hall
  flick fn invoke chime press --json | jq .total`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var payload []byte
			if len(args) == 2 {
				if args[1] == "-" {
					b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), flickapi.MaxPayload+1))
					if err != nil {
						return err
					}
					payload = b
				} else {
					payload = []byte(args[1])
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if topic != "" {
				q.Set("topic", topic)
			}
			h := http.Header{}
			if contentType != "" {
				h.Set("Content-Type", contentType)
			}
			resp, err := c.Do(cmd.Context(), http.MethodPost, flickapi.Prefix+"/functions/"+url.PathEscape(args[0])+"/invoke", q, bytes.NewReader(payload), h)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var out flickapi.InvokeResponse
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				return err
			}
			if jsonOut {
				printJSON(a.stdout, struct {
					flickapi.InvokeResponse
					Result string `json:"result"`
					Log    string `json:"log,omitempty"`
				}{out, string(out.Result), string(out.Log)})
			} else {
				a.stdout.Write(out.Result)
				if showLog && len(out.Log) > 0 {
					a.stderr.Write(out.Log)
				}
			}
			if out.Status != "ok" {
				return fmt.Errorf("function %s failed after %d attempt(s): %s", args[0], out.Attempts, out.Error)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the outcome (status, timings, result, log) as JSON")
	cmd.Flags().BoolVar(&showLog, "log", false, "also print the function's stderr")
	cmd.Flags().StringVar(&topic, "topic", "", "FLICK_TOPIC the function sees")
	cmd.Flags().StringVar(&contentType, "content-type", "", "FLICK_CONTENT_TYPE the function sees")
	return cmd
}

func (a *app) fnLogsCmd() *cobra.Command {
	var follow, jsonOut bool
	var tail int
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] NAME",
		Short: "Show a function's log: its stderr and Flick's notes (retries, failures)",
		Example: `  flick fn logs chime
  flick fn logs -f --tail 20 chime`,
		Args: exactArgs(1, "a function name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{"tail": {fmt.Sprint(tail)}}
			if follow {
				q.Set("follow", "1")
			}
			resp, err := c.Do(cmd.Context(), http.MethodGet, flickapi.Prefix+"/functions/"+url.PathEscape(args[0])+"/logs", q, nil, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			return a.streamLines(cmd.Context(), resp.Body, func(raw []byte) {
				if jsonOut {
					a.stdout.Write(append(raw, '\n'))
					return
				}
				var l reflex.LogLine
				if json.Unmarshal(raw, &l) == nil {
					fmt.Fprintf(a.stdout, "%s %-6s %s %s\n", l.Time.Local().Format("15:04:05.000"), l.Stream, l.EventID, l.Text)
				}
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().IntVarP(&tail, "tail", "n", 100, "lines of history to print (0: all kept)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON lines")
	return cmd
}

func (a *app) streamLines(ctx context.Context, r io.Reader, fn func([]byte)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fn(sc.Bytes())
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

func (a *app) fnPushCmd() *cobra.Command {
	var insecure bool
	cmd := &cobra.Command{
		Use:   "push FILE REF",
		Short: "Publish a .wasm module to a registry as a CNCF Wasm OCI artifact",
		Long: `Push a module so hubs can deploy it with 'flick fn deploy NAME --image REF'.
The artifact has the CNCF layout (config application/vnd.wasm.config.v0+json,
one application/wasm layer), which wasmCloud, Spin and oras understand too.
Credentials come from docker config.json ('flick login'). Registries on
loopback addresses are reached over plain HTTP.`,
		Example: `  flick fn push chime.wasm registry.lan:5000/fn/chime:1.0
  flick fn push --insecure chime.wasm 10.0.0.5:5000/fn/chime:dev`,
		Args: exactArgs(2, "a module file and a reference"),
		RunE: func(cmd *cobra.Command, args []string) error {
			mod, err := os.ReadFile(args[0])
			if err != nil {
				return errdefs.NewInvalidArgument(err)
			}
			d, err := fnimage.Push(cmd.Context(), mod, args[1], fnimage.PushOptions{Insecure: insecure})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: digest: %s size: %d\n", args[1], d, len(mod))
			return nil
		},
	}
	cmd.Flags().BoolVar(&insecure, "insecure", false, "use plain HTTP for this registry")
	return cmd
}

func (a *app) eventsCmd() *cobra.Command {
	var fn string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "events [OPTIONS]",
		Short: "Stream function lifecycle events (deploy, done, error, timeout, drop, reject)",
		Example: `  flick events
  flick events --function chime --json | jq -c 'select(.type != "done")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if fn != "" {
				q.Set("function", fn)
			}
			resp, err := c.Do(cmd.Context(), http.MethodGet, flickapi.Prefix+"/events", q, nil, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			return a.streamLines(cmd.Context(), resp.Body, func(raw []byte) {
				if jsonOut {
					a.stdout.Write(append(raw, '\n'))
					return
				}
				var e reflex.Event
				if json.Unmarshal(raw, &e) == nil {
					extra := e.Detail
					if e.Duration > 0 {
						extra = strings.TrimSpace(e.Duration.String() + " " + extra)
					}
					fmt.Fprintf(a.stdout, "%s %-8s %s %s %s %s\n", e.Time.Local().Format("15:04:05.000000"), e.Type, e.Function, e.EventID, e.Topic, extra)
				}
			})
		},
	}
	cmd.Flags().StringVar(&fn, "function", "", "only this function's events")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON lines")
	return cmd
}
