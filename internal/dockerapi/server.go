// Package dockerapi serves the Docker Engine API (the subset Flick supports)
// plus Flick's own endpoints under /flick/v1/, so the real docker CLI and any
// Docker SDK work against a Flick socket.
//
// This is the one place where error classes become HTTP statuses. Endpoints
// Flick does not implement answer with a Docker-style JSON error that names what
// Flick does not do, so a user sees "Error response from daemon: ..." with a
// reason instead of a bare 404.
package dockerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flick-edge/flick/internal/container"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/image"
	"github.com/flick-edge/flick/internal/pull"
	"github.com/flick-edge/flick/internal/registry"
)

// API versions served. Clients newer than APIVersion negotiate down to it.
const (
	APIVersion    = "1.47"
	MinAPIVersion = "1.24"
)

// Config wires the server.
type Config struct {
	Images   *image.Store
	Puller   *pull.Puller
	Registry *registry.Client
	// Containers is nil when the daemon runs without the container engine.
	Containers *container.Manager
	System     SystemInfo
	Logger     *slog.Logger
}

// SystemInfo is what /info and /version report about the daemon.
type SystemInfo struct {
	Version       string
	GitCommit     string
	DataRoot      string
	InsecureRegs  []string
	CgroupVersion string
	Started       time.Time
}

// Server is the API handler.
type Server struct {
	cfg Config
	mux *http.ServeMux
	log *slog.Logger
}

// New returns the API handler.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger}
	s.routes()
	return s
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /_ping", s.ping)
	m.HandleFunc("HEAD /_ping", s.ping)
	m.HandleFunc("GET /version", s.version)
	m.HandleFunc("GET /info", s.info)
	m.HandleFunc("POST /auth", s.auth)
	m.HandleFunc("POST /images/create", s.imageCreate)
	m.HandleFunc("GET /images/json", s.imageList)
	m.HandleFunc("POST /images/prune", s.imagePrune)
	m.HandleFunc("GET /system/df", s.systemDF)
	// No builds, so no build cache: pruning it (docker system prune) is
	// done at once.
	m.HandleFunc("POST /build/prune", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"CachesDeleted": []string{}, "SpaceReclaimed": 0})
	})
	m.HandleFunc("GET /flick/v1/system/check", s.systemCheck)
	s.containerRoutes()
	// Image names contain slashes, so /images/{name}/json and friends are
	// dispatched by suffix.
	m.HandleFunc("/images/", s.imageByName)
	m.HandleFunc("/", s.unsupported)
}

var versionPrefix = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^/v(\d+\.\d+)(/.*)$`) })

// ServeHTTP strips the /vX.Y prefix (refusing versions below the minimum),
// sets Docker's headers and logs each request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if m := versionPrefix().FindStringSubmatch(r.URL.Path); m != nil {
		if versionLess(m[1], MinAPIVersion) {
			writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", m[1], MinAPIVersion)))
			return
		}
		r.URL.Path = m[2]
		r.URL.RawPath = ""
		r = r.WithContext(context.WithValue(r.Context(), apiVersionKey{}, m[1]))
	}
	w.Header().Set("Api-Version", APIVersion)
	w.Header().Set("Server", "Flick/"+s.cfg.System.Version+" (linux)")
	w.Header().Set("Docker-Experimental", "false")
	w.Header().Set("Ostype", "linux")
	s.mux.ServeHTTP(w, r)
	s.log.Debug("api", "method", r.Method, "path", r.URL.Path, "took", time.Since(start))
}

type apiVersionKey struct{}

// clientBefore says whether the request named an API version older than v
// (a request without a version speaks the newest).
func clientBefore(r *http.Request, v string) bool {
	got, ok := r.Context().Value(apiVersionKey{}).(string)
	return ok && versionLess(got, v)
}

func versionLess(a, b string) bool {
	pa, pb := strings.SplitN(a, ".", 2), strings.SplitN(b, ".", 2)
	ma, _ := strconv.Atoi(pa[0])
	mb, _ := strconv.Atoi(pb[0])
	if ma != mb {
		return ma < mb
	}
	na, _ := strconv.Atoi(pa[1])
	nb, _ := strconv.Atoi(pb[1])
	return na < nb
}

// StatusOf maps an error class to an HTTP status: the only such mapping.
func StatusOf(err error) int {
	switch errdefs.ClassOf(err) {
	case errdefs.NotFound:
		return http.StatusNotFound
	case errdefs.AlreadyExists, errdefs.Conflict:
		return http.StatusConflict
	case errdefs.InvalidArgument:
		return http.StatusBadRequest
	case errdefs.FailedPrecondition:
		return http.StatusPreconditionFailed
	case errdefs.Unavailable:
		return http.StatusServiceUnavailable
	case errdefs.ResourceExhausted:
		return http.StatusInsufficientStorage
	case errdefs.NotImplemented:
		return http.StatusNotImplemented
	case errdefs.Unauthorized:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// ClassOfStatus is the inverse of StatusOf, for clients.
func ClassOfStatus(code int) errdefs.Class {
	switch code {
	case http.StatusNotFound:
		return errdefs.NotFound
	case http.StatusConflict:
		return errdefs.Conflict
	case http.StatusBadRequest:
		return errdefs.InvalidArgument
	case http.StatusPreconditionFailed:
		return errdefs.FailedPrecondition
	case http.StatusServiceUnavailable:
		return errdefs.Unavailable
	case http.StatusInsufficientStorage:
		return errdefs.ResourceExhausted
	case http.StatusNotImplemented:
		return errdefs.NotImplemented
	case http.StatusUnauthorized, http.StatusForbidden:
		return errdefs.Unauthorized
	}
	return errdefs.Unknown
}

type errorResponse struct {
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(StatusOf(err))
	json.NewEncoder(w).Encode(errorResponse{Message: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// outOfScope names features Flick leaves out on purpose (docs/SCOPE.md).
var outOfScope = map[string]string{
	"swarm": "swarm mode", "services": "swarm services", "nodes": "swarm nodes", "tasks": "swarm tasks",
	"secrets": "swarm secrets", "configs": "swarm configs", "plugins": "plugins", "build": "image builds",
	"session": "BuildKit sessions", "distribution": "distribution inspection", "checkpoints": "checkpoints",
}

func (s *Server) unsupported(w http.ResponseWriter, r *http.Request) {
	first := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")[0]
	if what, ok := outOfScope[first]; ok {
		writeError(w, errdefs.NewNotImplemented(fmt.Errorf("%s are not supported by Flick, an edge engine that leaves them out on purpose (see docs/SCOPE.md)", what)))
		return
	}
	writeError(w, errdefs.NewNotImplemented(fmt.Errorf("flick does not support %s %s yet: it serves the Docker API for containers, images, volumes, exec, logs and events (its docs/SCOPE.md says what else is left out, and why)", r.Method, r.URL.Path)))
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Length", "0")
		return
	}
	w.Write([]byte("OK"))
}

var errNoName = errors.New("no image name given")
