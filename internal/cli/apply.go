package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/go-units"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/flickapi"
	"github.com/flick-edge/flick/internal/route"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// hubFile is the declarative form (flick apply -f hub.yaml). Keys are the
// deploy flags' names.
type hubFile struct {
	Functions []hubFunction `yaml:"functions"`
	Routes    []hubRoute    `yaml:"routes"`
}

// hubRoute is a route in hub.yaml; keys are the 'flick route add' flags.
type hubRoute struct {
	route.Spec `yaml:",inline"`
	TTL        string `yaml:"ttl"`
	Linger     string `yaml:"linger"`
	MaxSize    string `yaml:"max-size"`
}

type hubFunction struct {
	Name        string            `yaml:"name"`
	Wasm        string            `yaml:"wasm"` // path, relative to the file
	Image       string            `yaml:"image"`
	On          []string          `yaml:"on"`
	Reply       string            `yaml:"reply"`
	Timeout     string            `yaml:"timeout"`
	Memory      string            `yaml:"memory"`
	Concurrency int               `yaml:"concurrency"`
	Queue       int               `yaml:"queue"`
	Overflow    string            `yaml:"overflow"`
	Retries     int               `yaml:"retries"`
	DeadLetter  string            `yaml:"dead-letter"`
	Env         map[string]string `yaml:"env"`
	MaxOutput   string            `yaml:"max-output"`
}

func loadHub(path string, stdin io.Reader) (flickapi.ApplyRequest, error) {
	var data []byte
	var err error
	dir := filepath.Dir(path)
	if path == "-" {
		data, err = io.ReadAll(stdin)
		dir = "."
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return flickapi.ApplyRequest{}, errdefs.NewInvalidArgument(err)
	}
	var hf hubFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&hf); err != nil && !errors.Is(err, io.EOF) {
		return flickapi.ApplyRequest{}, errdefs.NewInvalidArgument(fmt.Errorf("%s: %w (keys are the 'flick fn deploy' flag names)", path, err))
	}
	var req flickapi.ApplyRequest
	for _, hr := range hf.Routes {
		sp := hr.Spec
		for _, d := range []struct {
			s   string
			dst *time.Duration
		}{{hr.TTL, &sp.TTL}, {hr.Linger, &sp.Linger}} {
			if d.s != "" {
				v, err := time.ParseDuration(d.s)
				if err != nil {
					return req, errdefs.NewInvalidArgument(fmt.Errorf("%s: route %s: %q: want a duration like 24h", path, sp.Name, d.s))
				}
				*d.dst = v
			}
		}
		if hr.MaxSize != "" {
			n, err := units.RAMInBytes(hr.MaxSize)
			if err != nil {
				return req, errdefs.NewInvalidArgument(fmt.Errorf("%s: route %s: max-size %q: %v", path, sp.Name, hr.MaxSize, err))
			}
			sp.MaxBytes = n
		}
		req.Routes = append(req.Routes, sp)
	}
	for _, h := range hf.Functions {
		f := specFlags{image: h.Image, reply: h.Reply, deadLetter: h.DeadLetter, overflow: h.Overflow, memory: h.Memory,
			maxOutput: h.MaxOutput, on: h.On, concurrency: h.Concurrency, queue: h.Queue, retries: h.Retries}
		if h.Wasm != "" {
			f.wasm = h.Wasm
			if !filepath.IsAbs(f.wasm) {
				f.wasm = filepath.Join(dir, f.wasm)
			}
		}
		if h.Timeout != "" {
			if f.timeout, err = time.ParseDuration(h.Timeout); err != nil {
				return req, errdefs.NewInvalidArgument(fmt.Errorf("%s: function %s: timeout %q: want a duration like 100ms", path, h.Name, h.Timeout))
			}
		}
		for k, v := range h.Env {
			f.env = append(f.env, k+"="+v)
		}
		sp, mod, err := f.spec(h.Name)
		if err != nil {
			return req, fmt.Errorf("%s: function %q: %w", path, h.Name, err)
		}
		req.Functions = append(req.Functions, flickapi.DeployRequest{Spec: sp, On: sp.On, Wasm: mod})
	}
	return req, nil
}

func (a *app) applyCmd() *cobra.Command {
	var file string
	var prune, jsonOut bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Deploy a set of functions (and routes) from a file, atomically",
		Long: `Deploy every function a YAML file describes, in one step: every module is
validated and compiled first, and if any is refused nothing changes. With
--prune, deployed functions the file does not name are removed in the same
transaction, so the hub ends up exactly as the file says.

File format (keys are the 'flick fn deploy' flags; wasm paths are relative
to the file):

  functions:
    - name: chime
      wasm: build/chime.wasm
      on: ["mqtt:home/+/button"]
      reply: home/{1}/chime
      timeout: 100ms
      memory: 4MiB
    - name: report
      image: registry.lan:5000/fn/report:1.2
      on: ["every:5m"]
      retries: 2
      dead-letter: dead/report
  routes:
    - name: cloud
      from: ["home/+/chime", "dead/#"]
      to: mqtts://broker.example:8883/fleet/{hub}/{topic}
      ttl: 24h
      max-size: 256MiB

Routes are applied after the functions; with --prune, routes the file does
not name are removed too.`,
		Example: `  flick apply -f hub.yaml
  flick apply -f hub.yaml --prune --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError{errors.New("give the file with -f FILE ('-' for stdin)")}
			}
			req, err := loadHub(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			req.Prune = prune
			c, err := a.client()
			if err != nil {
				return err
			}
			var out flickapi.ApplyResponse
			if err := c.JSON(cmd.Context(), http.MethodPost, flickapi.Prefix+"/apply", nil, req, &out); err != nil {
				return err
			}
			if jsonOut {
				return printJSON(a.stdout, out)
			}
			for _, s := range out.Deployed {
				fmt.Fprintf(a.stdout, "deployed %s (%s)\n", s.Name, shortDigest(s.Module.String()))
			}
			for _, n := range out.Removed {
				fmt.Fprintf(a.stdout, "removed %s\n", n)
			}
			for _, r := range out.Routes {
				fmt.Fprintf(a.stdout, "route %s -> %s\n", r.Name, r.To)
			}
			for _, n := range out.RemovedRoutes {
				fmt.Fprintf(a.stdout, "removed route %s\n", n)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "YAML file describing the functions ('-' for stdin)")
	cmd.Flags().BoolVar(&prune, "prune", false, "remove deployed functions the file does not name")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print what changed as JSON")
	return cmd
}
