// Package flickapi serves Flick's own endpoints under /flick/v1/: function
// deployment and invocation, logs and lifecycle events, broker status, and
// the HTTP function triggers. The Docker-compatible API lives in dockerapi;
// the daemon mounts both on one socket.
package flickapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flick-edge/flick/internal/dockerapi"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/fnimage"
	"github.com/flick-edge/flick/internal/forward"
	"github.com/flick-edge/flick/internal/function"
	"github.com/flick-edge/flick/internal/reflex"
	"github.com/flick-edge/flick/internal/registry"
	"github.com/flick-edge/flick/internal/route"
)

// Prefix is where Flick's API lives.
const Prefix = "/flick/v1"

// MaxModuleBody bounds a deploy request (module bytes travel base64 in JSON).
const MaxModuleBody = 96 << 20

// MaxPayload bounds an invoke or HTTP-trigger body.
const MaxPayload = 1 << 20

// Info is GET /flick/v1/info.
type Info struct {
	MQTT      []string          `json:"mqtt"`
	HTTP      string            `json:"http,omitempty"`
	Metrics   string            `json:"metrics,omitempty"`
	Functions int               `json:"functions"`
	Broker    map[string]uint64 `json:"broker"`
}

// Config wires the server.
type Config struct {
	Engine   *reflex.Engine
	Routes   *forward.Forwarder
	Registry *registry.Client
	Info     func() Info
	Logger   *slog.Logger
}

// Server serves /flick/v1/.
type Server struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the handler.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	m := s.mux
	m.HandleFunc("GET "+Prefix+"/info", s.info)
	m.HandleFunc("GET "+Prefix+"/functions", s.list)
	m.HandleFunc("POST "+Prefix+"/functions", s.deploy)
	m.HandleFunc("POST "+Prefix+"/apply", s.apply)
	m.HandleFunc("GET "+Prefix+"/functions/{name}", s.get)
	m.HandleFunc("DELETE "+Prefix+"/functions/{name}", s.remove)
	m.HandleFunc("POST "+Prefix+"/functions/{name}/invoke", s.invoke)
	m.HandleFunc("GET "+Prefix+"/functions/{name}/logs", s.logs)
	m.HandleFunc("GET "+Prefix+"/events", s.events)
	m.HandleFunc("GET "+Prefix+"/routes", s.routeList)
	m.HandleFunc("POST "+Prefix+"/routes", s.routeAdd)
	m.HandleFunc("GET "+Prefix+"/routes/{name}", s.routeGet)
	m.HandleFunc("DELETE "+Prefix+"/routes/{name}", s.routeRemove)
	m.Handle(Prefix+"/hooks/", http.StripPrefix(Prefix+"/hooks", s.Hooks()))
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func writeError(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(dockerapi.StatusOf(err))
	json.NewEncoder(w).Encode(map[string]string{"message": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) info(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, s.cfg.Info()) }

func (s *Server) list(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, s.cfg.Engine.List())
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.Engine.Get(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, st)
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Engine.Remove(r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// DeployRequest is one function to deploy: its spec plus the module, given
// inline (Wasm) or as an OCI reference (Spec.Image).
type DeployRequest struct {
	Spec function.Spec         `json:"spec"`
	On   []string              `json:"on,omitempty"` // trigger strings, parsed by the daemon
	Wasm []byte                `json:"wasm,omitempty"`
	Auth *registry.Credentials `json:"auth,omitempty"`
}

// ApplyRequest deploys a set atomically; with Prune, functions not in the
// set are removed in the same transaction. Routes are applied after the
// functions (in their own transaction), pruned likewise.
type ApplyRequest struct {
	Functions []DeployRequest `json:"functions"`
	Routes    []route.Spec    `json:"routes,omitempty"`
	Prune     bool            `json:"prune"`
}

// ApplyResponse says what changed.
type ApplyResponse struct {
	Deployed      []function.Spec `json:"deployed"`
	Removed       []string        `json:"removed,omitempty"`
	Routes        []route.Spec    `json:"routes,omitempty"`
	RemovedRoutes []string        `json:"removedRoutes,omitempty"`
}

func (s *Server) resolve(ctx context.Context, reqs []DeployRequest) ([]reflex.Deployment, error) {
	deps := make([]reflex.Deployment, len(reqs))
	for i, d := range reqs {
		sp := d.Spec
		sp.On = append(sp.On, d.On...)
		mod := d.Wasm
		if sp.Image != "" {
			if len(mod) > 0 {
				return nil, errdefs.NewInvalidArgument(fmt.Errorf("function %s: give a module file or an image, not both", sp.Name))
			}
			var cred registry.Credentials
			if d.Auth != nil {
				cred = *d.Auth
			}
			f, err := fnimage.Fetch(ctx, s.cfg.Registry, sp.Image, cred)
			if err != nil {
				return nil, fmt.Errorf("function %s: %w", sp.Name, err)
			}
			sp.Image = f.Ref
			mod = f.Module
		}
		deps[i] = reflex.Deployment{Spec: sp, Wasm: mod}
	}
	return deps, nil
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, MaxModuleBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errdefs.NewInvalidArgument(fmt.Errorf("bad request body: %w", err))
	}
	return nil
}

func (s *Server) deploy(w http.ResponseWriter, r *http.Request) {
	var req DeployRequest
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	deps, err := s.resolve(r.Context(), []DeployRequest{req})
	if err != nil {
		writeError(w, err)
		return
	}
	specs, err := s.cfg.Engine.Deploy(r.Context(), deps, nil)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, specs[0])
}

func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	var req ApplyRequest
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	deps, err := s.resolve(r.Context(), req.Functions)
	if err != nil {
		writeError(w, err)
		return
	}
	var remove []string
	if req.Prune {
		keep := map[string]bool{}
		for _, d := range deps {
			keep[d.Spec.Name] = true
		}
		for _, st := range s.cfg.Engine.List() {
			if !keep[st.Name] {
				remove = append(remove, st.Name)
			}
		}
	}
	specs, err := s.cfg.Engine.Deploy(r.Context(), deps, remove)
	if err != nil {
		writeError(w, err)
		return
	}
	resp := ApplyResponse{Deployed: specs, Removed: remove}
	if s.cfg.Routes != nil && (len(req.Routes) > 0 || req.Prune) {
		var gone []string
		if req.Prune {
			keep := map[string]bool{}
			for _, rt := range req.Routes {
				keep[rt.Name] = true
			}
			for _, st := range s.cfg.Routes.List() {
				if !keep[st.Name] {
					gone = append(gone, st.Name)
				}
			}
		}
		rs, err := s.cfg.Routes.Apply(req.Routes, gone)
		if err != nil {
			writeError(w, fmt.Errorf("functions applied; routes: %w", err))
			return
		}
		resp.Routes, resp.RemovedRoutes = rs, gone
	}
	writeJSON(w, 200, resp)
}

// InvokeResponse is the outcome of POST .../invoke.
type InvokeResponse struct {
	reflex.Outcome
	Result []byte `json:"result"`
	Log    []byte `json:"log,omitempty"`
}

func readPayload(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxPayload))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("payload is over the %d-byte limit", MaxPayload))
	}
	return b, err
}

func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	payload, err := readPayload(r)
	if err != nil {
		writeError(w, err)
		return
	}
	topic := r.URL.Query().Get("topic")
	out, err := s.cfg.Engine.Invoke(r.Context(), r.PathValue("name"), reflex.Inbound{
		Source: "invoke", Topic: topic, Payload: payload, ContentType: r.Header.Get("Content-Type"),
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, InvokeResponse{Outcome: out, Result: out.Result, Log: out.Log})
}

func streamJSON(w http.ResponseWriter) (*json.Encoder, func()) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(200)
	bw := bufio.NewWriter(w)
	fl, _ := w.(http.Flusher)
	return json.NewEncoder(bw), func() {
		bw.Flush()
		if fl != nil {
			fl.Flush()
		}
	}
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := s.cfg.Engine.Get(name); err != nil {
		writeError(w, err)
		return
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("tail"))
	follow := r.URL.Query().Get("follow") == "1" || r.URL.Query().Get("follow") == "true"
	lines, c, cancel := s.cfg.Engine.Logs(name, n, follow)
	defer cancel()
	enc, flush := streamJSON(w)
	for _, l := range lines {
		enc.Encode(l)
	}
	flush()
	if c == nil {
		return
	}
	for {
		select {
		case l := <-c:
			enc.Encode(l)
			flush()
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fn := r.URL.Query().Get("function")
	c, cancel := s.cfg.Engine.Events()
	defer cancel()
	enc, flush := streamJSON(w)
	flush()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	pending := false
	for {
		select {
		case ev := <-c:
			if fn != "" && ev.Function != fn {
				continue
			}
			enc.Encode(ev)
			pending = true
		case <-tick.C:
			if pending {
				flush()
				pending = false
			}
		case <-r.Context().Done():
			return
		}
	}
}

// Hooks serves http: triggers: a request to a bound path runs the function
// with the body as payload and answers with its result (200), 429 when its
// queue is full, 502 when it failed, 504 when it timed out.
func (s *Server) Hooks() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := s.cfg.Engine.HTTPFunction(r.URL.Path)
		if !ok {
			http.Error(w, "no function is bound to http:"+r.URL.Path+" (see flick fn ls)", http.StatusNotFound)
			return
		}
		payload, err := readPayload(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		out, err := s.cfg.Engine.Invoke(r.Context(), name, reflex.Inbound{
			Source: "http", Topic: r.URL.Path, Payload: payload, ContentType: r.Header.Get("Content-Type"),
		})
		if err != nil {
			if errors.Is(err, reflex.ErrOverloaded) {
				w.Header().Set("Retry-After", "1")
				http.Error(w, err.Error(), http.StatusTooManyRequests)
				return
			}
			http.Error(w, err.Error(), dockerapi.StatusOf(err))
			return
		}
		w.Header().Set("Flick-Event", out.EventID)
		switch out.Status {
		case "ok":
			w.WriteHeader(200)
			w.Write(out.Result)
		case "timeout":
			http.Error(w, out.Error, http.StatusGatewayTimeout)
		case "dropped":
			http.Error(w, out.Error, http.StatusServiceUnavailable)
		default:
			http.Error(w, strings.TrimSpace(out.Error), http.StatusBadGateway)
		}
	})
}

func (s *Server) routeList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, s.cfg.Routes.List())
}

func (s *Server) routeGet(w http.ResponseWriter, r *http.Request) {
	for _, st := range s.cfg.Routes.List() {
		if st.Name == r.PathValue("name") {
			writeJSON(w, 200, st)
			return
		}
	}
	writeError(w, errdefs.NewNotFound(fmt.Errorf("no such route: %s (see flick route ls)", r.PathValue("name"))))
}

func (s *Server) routeAdd(w http.ResponseWriter, r *http.Request) {
	var sp route.Spec
	if err := decode(r, &sp); err != nil {
		writeError(w, err)
		return
	}
	out, err := s.cfg.Routes.Apply([]route.Spec{sp}, nil)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, out[0])
}

func (s *Server) routeRemove(w http.ResponseWriter, r *http.Request) {
	if _, err := s.cfg.Routes.Apply(nil, []string{r.PathValue("name")}); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
