package dockerapi

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/container"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/logfile"
	mcontainer "github.com/moby/moby/api/types/container"
	mevents "github.com/moby/moby/api/types/events"
	mnetwork "github.com/moby/moby/api/types/network"
	mvolume "github.com/moby/moby/api/types/volume"
)

func (s *Server) containerRoutes() {
	m := s.mux
	m.HandleFunc("POST /containers/create", s.containerCreate)
	m.HandleFunc("GET /containers/json", s.containerList)
	m.HandleFunc("GET /containers/{id}/json", s.containerInspect)
	m.HandleFunc("POST /containers/{id}/start", s.containerStart)
	m.HandleFunc("POST /containers/{id}/stop", s.containerStop)
	m.HandleFunc("POST /containers/{id}/restart", s.containerRestart)
	m.HandleFunc("POST /containers/{id}/kill", s.containerKill)
	m.HandleFunc("POST /containers/{id}/wait", s.containerWait)
	m.HandleFunc("GET /containers/{id}/logs", s.containerLogs)
	m.HandleFunc("POST /containers/{id}/attach", s.containerAttach)
	m.HandleFunc("POST /containers/{id}/resize", s.containerResize)
	m.HandleFunc("DELETE /containers/{id}", s.containerDelete)
	m.HandleFunc("POST /containers/{id}/rename", s.containerRename)
	m.HandleFunc("POST /containers/{id}/update", s.containerUpdate)
	// A reference with a slash (an image name: docker inspect tries a
	// container first) is no container: 404, so the client looks further.
	m.HandleFunc("GET /containers/", s.noSuchContainer)
	s.observeRoutes()
	s.execRoutes()
	m.HandleFunc("GET /events", s.events)
}

func (s *Server) containers(w http.ResponseWriter) bool {
	if s.cfg.Containers == nil {
		writeError(w, errdefs.NewNotImplemented(fmt.Errorf("containers are not enabled in this daemon")))
		return false
	}
	return true
}

func (s *Server) containerCreate(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	var req mcontainer.CreateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&req); err != nil {
		writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("bad create request: %w", err)))
		return
	}
	c, err := s.cfg.Containers.Create(r.Context(), container.CreateRequest{Name: r.URL.Query().Get("name"), Config: req.Config, HostConfig: req.HostConfig})
	if err != nil {
		writeError(w, err)
		return
	}
	warnings := c.Warnings
	if warnings == nil {
		warnings = []string{}
	}
	writeJSON(w, http.StatusCreated, mcontainer.CreateResponse{ID: c.ID, Warnings: warnings})
}

func (s *Server) containerStart(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	if err := s.cfg.Containers.Start(r.Context(), r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func stopTimeout(r *http.Request, c container.Container) time.Duration {
	if t := r.URL.Query().Get("t"); t != "" {
		if n, err := strconv.Atoi(t); err == nil && n >= 0 {
			return time.Duration(n) * time.Second
		}
	}
	if c.Config != nil && c.Config.StopTimeout != nil {
		return time.Duration(*c.Config.StopTimeout) * time.Second
	}
	return 10 * time.Second
}

func (s *Server) containerStop(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	c, err := s.cfg.Containers.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if !c.Running() {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if err := s.cfg.Containers.Stop(r.Context(), c.ID, stopTimeout(r, c)); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) containerRestart(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	c, err := s.cfg.Containers.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.cfg.Containers.Restart(r.Context(), c.ID, stopTimeout(r, c)); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) containerKill(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	if err := s.cfg.Containers.Kill(r.Context(), r.PathValue("id"), r.URL.Query().Get("signal")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) containerWait(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	wait, err := s.cfg.Containers.PrepareWait(r.PathValue("id"), r.URL.Query().Get("condition"))
	if err != nil {
		writeError(w, err)
		return
	}
	// Docker sends the header at once and the body when the wait ends.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	code, err := wait(r.Context())
	resp := mcontainer.WaitResponse{StatusCode: int64(code)}
	if err != nil {
		resp.Error = &mcontainer.WaitExitError{Message: err.Error()}
	}
	json.NewEncoder(w).Encode(resp)
}

func (s *Server) containerDelete(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	q := r.URL.Query()
	if err := s.cfg.Containers.Remove(r.Context(), r.PathValue("id"), boolParam(q.Get("force")), boolParam(q.Get("v"))); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func boolParam(v string) bool { return v == "1" || strings.EqualFold(v, "true") }

func (s *Server) containerList(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	q := r.URL.Query()
	list, err := s.cfg.Containers.List()
	if err != nil {
		writeError(w, err)
		return
	}
	cf, err := newContainerFilter(q.Get("filters"), psFilterKeys, list)
	if err != nil {
		writeError(w, err)
		return
	}
	limit := -1
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil {
			writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("invalid limit %q", l)))
			return
		}
	}
	// As Docker: -n/-l and a status or exit filter list stopped ones too.
	all := boolParam(q.Get("all")) || limit > 0 || cf.listsStopped()
	newestFirst(list)
	out := []mcontainer.Summary{}
	for _, c := range list {
		if !all && !c.Running() || !cf.match(c) {
			continue
		}
		if limit > 0 && len(out) == limit {
			break
		}
		sum := mcontainer.Summary{ID: c.ID, Names: []string{"/" + c.Name}, Image: c.Image, ImageID: c.ImageID.String(),
			Command: strings.Join(append([]string{c.Path}, c.Args...), " "), Created: c.Created.Unix(),
			Labels: c.Config.Labels, State: mcontainer.ContainerState(c.Status()), Status: humanStatus(c)}
		sum.HostConfig.NetworkMode = string(c.HostConfig.NetworkMode)
		if ep, ok := s.cfg.Containers.Endpoint(c); ok && c.Running() {
			for _, p := range ep.Ports {
				sum.Ports = append(sum.Ports, mcontainer.PortSummary{IP: p.HostIP, PrivatePort: p.ContainerPort, PublicPort: p.HostPort, Type: p.Proto})
			}
		}
		out = append(out, sum)
	}
	writeJSON(w, 200, out)
}

func humanStatus(c container.Container) string {
	switch c.Status() {
	case "created":
		return "Created"
	case "running":
		return "Up " + units.HumanDuration(time.Since(c.State.StartedAt))
	case "restarting":
		return fmt.Sprintf("Restarting (%d) %s ago", c.State.ExitCode, units.HumanDuration(time.Since(c.State.FinishedAt)))
	}
	return fmt.Sprintf("Exited (%d) %s ago", c.State.ExitCode, units.HumanDuration(time.Since(c.State.FinishedAt)))
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (s *Server) containerInspect(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	c, err := s.cfg.Containers.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	st := c.Status()
	resp := mcontainer.InspectResponse{
		ID: c.ID, Created: rfc3339(c.Created), Path: c.Path, Args: c.Args, Image: c.ImageID.String(), Name: "/" + c.Name,
		RestartCount: c.State.RestartCount, Driver: "overlay", Platform: "linux",
		ResolvConfPath: c.Bundle + "/resolv.conf", HostnamePath: c.Bundle + "/hostname", HostsPath: c.Bundle + "/hosts",
		LogPath: c.Bundle + "/" + bundle.LogFile,
		State: &mcontainer.State{Status: mcontainer.ContainerState(st), Running: st == "running", Restarting: st == "restarting",
			OOMKilled: c.State.OOMKilled, Pid: c.State.Pid, ExitCode: c.State.ExitCode, Error: c.State.Error,
			StartedAt: rfc3339(c.State.StartedAt), FinishedAt: rfc3339(c.State.FinishedAt)},
		HostConfig: c.HostConfig, Config: c.Config,
		NetworkSettings: &mcontainer.NetworkSettings{Ports: mnetwork.PortMap{}, Networks: map[string]*mnetwork.EndpointSettings{}},
	}
	resp.Mounts = s.cfg.Containers.MountsOf(c)
	if resp.Mounts == nil {
		resp.Mounts = []mcontainer.MountPoint{}
	}
	legacy := legacyNetworkSettings{NetworkSettings: resp.NetworkSettings}
	if ep, ok := s.cfg.Containers.Endpoint(c); ok && c.Running() {
		resp.NetworkSettings.SandboxKey = ep.NetNSPath
		es := &mnetwork.EndpointSettings{IPAddress: ep.IP, Gateway: ep.Gateway,
			IPPrefixLen: ep.PrefixLen, MacAddress: macOf(ep.MAC), EndpointID: ep.ID, NetworkID: "bridge"}
		resp.NetworkSettings.Networks["bridge"] = es
		legacy.IPAddress, legacy.IPPrefixLen, legacy.MacAddress = addrString(ep.IP), ep.PrefixLen, es.MacAddress.String()
		legacy.Gateway = addrString(ep.Gateway)
		for _, p := range ep.Ports {
			port, ok := mnetwork.PortFrom(p.ContainerPort, mnetwork.IPProtocol(p.Proto))
			if ok {
				resp.NetworkSettings.Ports[port] = append(resp.NetworkSettings.Ports[port], mnetwork.PortBinding{HostIP: p.HostIP, HostPort: strconv.Itoa(int(p.HostPort))})
			}
		}
	}
	// The API served (APIVersion) predates 1.52: its clients read the
	// default network's address at the top of NetworkSettings, and
	// scripts use {{.NetworkSettings.IPAddress}}.
	writeJSON(w, 200, inspectBefore152{InspectResponse: resp, NetworkSettings: &legacy})
}

// legacyNetworkSettings is NetworkSettings with the default network's
// fields that API 1.52 dropped from its top level.
type legacyNetworkSettings struct {
	*mcontainer.NetworkSettings
	Gateway     string
	IPAddress   string
	IPPrefixLen int
	MacAddress  string
}

type inspectBefore152 struct {
	mcontainer.InspectResponse
	NetworkSettings *legacyNetworkSettings
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// Docker's multiplexed stream: an 8-byte header (stream, 0, 0, 0, size
// big-endian) before each chunk, when the container has no TTY.
func writeFrame(w io.Writer, stream string, p []byte) error {
	var h [8]byte
	h[0] = 1
	if stream == "stderr" {
		h[0] = 2
	}
	binary.BigEndian.PutUint32(h[4:], uint32(len(p)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	q := r.URL.Query()
	c, err := s.cfg.Containers.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	wantOut, wantErr := boolParam(q.Get("stdout")), boolParam(q.Get("stderr"))
	if !wantOut && !wantErr {
		writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("you must choose at least one stream")))
		return
	}
	follow, stamps := boolParam(q.Get("follow")), boolParam(q.Get("timestamps"))
	var since, until time.Time
	if v := q.Get("since"); v != "" && v != "0" {
		if t, err := unixTime(v); err == nil {
			since = t
		}
	}
	ctx := r.Context()
	if v := q.Get("until"); v != "" && v != "0" {
		t, err := unixTime(v)
		if err != nil {
			writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("invalid until %q: want a Unix time", v)))
			return
		}
		until = t
		if !until.After(time.Now()) {
			follow = false // nothing after until is wanted, so nothing to wait for
		} else if follow {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, until) // follows until then
			defer cancel()
		}
	}
	tail := -1
	if v := q.Get("tail"); v != "" && v != "all" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			tail = n
		}
	}
	tty := c.Config != nil && c.Config.Tty
	if tty {
		w.Header().Set("Content-Type", "application/vnd.docker.raw-stream")
	} else {
		w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
	}
	w.WriteHeader(200)
	bw := bufio.NewWriter(w)
	flush := func() {
		bw.Flush()
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	emit := func(e logfile.Entry) error {
		if (e.Stream == "stdout" && !wantOut) || (e.Stream == "stderr" && !wantErr) || e.Time.Before(since) ||
			(!until.IsZero() && e.Time.After(until)) {
			return nil
		}
		line := []byte(e.Log)
		if stamps {
			line = append([]byte(e.Time.Format(time.RFC3339Nano)+" "), line...)
		}
		if tty {
			_, err := bw.Write(line)
			return err
		}
		return writeFrame(bw, e.Stream, line)
	}
	if tail >= 0 {
		// Collect the existing entries, keep the last n, then follow.
		var ring []logfile.Entry
		s.cfg.Containers.Logs(ctx, c.ID, false, func(e logfile.Entry) error {
			ring = append(ring, e)
			if len(ring) > tail {
				ring = ring[1:]
			}
			return nil
		})
		for _, e := range ring {
			emit(e)
		}
		flush()
		if !follow {
			return
		}
		last := time.Time{}
		if len(ring) > 0 {
			last = ring[len(ring)-1].Time
		}
		s.cfg.Containers.Logs(ctx, c.ID, true, func(e logfile.Entry) error {
			if !e.Time.After(last) {
				return nil
			}
			err := emit(e)
			flush()
			return err
		})
		return
	}
	s.cfg.Containers.Logs(ctx, c.ID, follow, func(e logfile.Entry) error {
		err := emit(e)
		if follow {
			flush()
		}
		return err
	})
	flush()
}

// containerAttach hijacks the connection and streams the container's output
// from now on (Docker's attach; `docker run` without -d uses it). Stdin is
// not supported yet.
func (s *Server) containerAttach(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	q := r.URL.Query()
	c, err := s.cfg.Containers.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	withStdin := boolParam(q.Get("stdin")) && c.Config != nil && (c.Config.OpenStdin || c.Config.Tty)
	tty := c.Config != nil && c.Config.Tty
	if boolParam(q.Get("stream")) {
		// From before the answer: the client starts the container next.
		defer s.cfg.Containers.Follow(c.ID)()
	}
	conn, buf, ok := hijack(w, r, tty)
	if !ok {
		return
	}
	defer conn.Close()
	if !boolParam(q.Get("stream")) {
		return
	}
	wantOut, wantErr := boolParam(q.Get("stdout")), boolParam(q.Get("stderr"))
	attached := time.Now()
	from := attached.Add(-50 * time.Millisecond)
	if c.Status() == "created" {
		from = time.Time{}
	}
	// Not r.Context(): a hijacked connection's request context ends when
	// the client half-closes (stdin done), but the output must go on.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if withStdin {
		// The client's bytes go to the container's stdin through its
		// monitor (buffered until the container has started).
		go s.cfg.Containers.AttachStdin(ctx, c.ID, buf.Reader)
	} else {
		go func() {
			// Clients without stdin half-close their side at once (EOF): that
			// is not a hang-up. A reset is; a vanished reader also shows when
			// the next write fails.
			b := make([]byte, 512)
			for {
				if _, err := buf.Read(b); err != nil {
					if err != io.EOF {
						cancel()
					}
					return
				}
			}
		}()
	}
	if c.Status() == "exited" {
		// docker start -a: attached before the start, so the output is
		// the next run's, to its end (an earlier run's end must not end
		// the stream at once).
		// Bounded: a client that leaves with a half-close is not seen
		// until something is written to it.
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
		err := s.cfg.Containers.AwaitRun(wctx, c.ID, attached)
		wcancel()
		if err != nil {
			s.log.Debug("attach ended before a start", "container", c.ID, "err", err)
			return
		}
		from = attached
	}
	read := 0 // log entries read, for the debug line
	err = s.cfg.Containers.Logs(ctx, c.ID, true, func(e logfile.Entry) error {
		read++
		if e.Time.Before(from) || (e.Stream == "stdout" && !wantOut) || (e.Stream == "stderr" && !wantErr) {
			return nil
		}
		var err error
		if tty {
			_, err = buf.WriteString(e.Log)
		} else {
			err = writeFrame(buf, e.Stream, []byte(e.Log))
		}
		if err == nil {
			err = buf.Flush()
		}
		return err
	})
	s.log.Debug("attach ended", "container", c.ID, "entries", read, "err", err, "ctx", ctx.Err())
}

func (s *Server) containerResize(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	h, _ := strconv.Atoi(r.URL.Query().Get("h"))
	wd, _ := strconv.Atoi(r.URL.Query().Get("w"))
	if h <= 0 || wd <= 0 || h > 65535 || wd > 65535 {
		writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("resize needs h and w between 1 and 65535")))
		return
	}
	if err := s.cfg.Containers.Resize(r.Context(), r.PathValue("id"), uint16(h), uint16(wd)); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) observeRoutes() {
	m := s.mux
	m.HandleFunc("GET /containers/{id}/stats", s.containerStats)
	m.HandleFunc("GET /containers/{id}/top", s.containerTop)
	m.HandleFunc("POST /containers/prune", s.containerPrune)
	m.HandleFunc("GET /volumes", s.volumeList)
	m.HandleFunc("GET /volumes/{name}", s.volumeInspect)
	m.HandleFunc("POST /volumes/create", s.volumeCreate)
	m.HandleFunc("DELETE /volumes/{name}", s.volumeDelete)
	m.HandleFunc("POST /volumes/prune", s.volumePrune)
	m.HandleFunc("GET /networks", s.networkList)
	m.HandleFunc("GET /networks/{id}", s.networkInspect)
	m.HandleFunc("POST /networks/prune", s.networkPrune)
}

func (s *Server) containerRename(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	if err := s.cfg.Containers.Rename(r.Context(), r.PathValue("id"), r.URL.Query().Get("name")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) containerUpdate(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	var uc mcontainer.UpdateConfig
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&uc); err != nil {
		writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("bad update request: %w", err)))
		return
	}
	if clientBefore(r, "1.40") && uc.PidsLimit != nil && *uc.PidsLimit == 0 {
		// Before API 1.40 clients always send PidsLimit 0 for "not
		// given": it must not lift a limit set at create (Docker reads it
		// so too).
		uc.PidsLimit = nil
	}
	warnings, err := s.cfg.Containers.Update(r.Context(), r.PathValue("id"), uc)
	if err != nil {
		writeError(w, err)
		return
	}
	if warnings == nil {
		warnings = []string{}
	}
	writeJSON(w, 200, mcontainer.UpdateResponse{Warnings: warnings})
}

func (s *Server) noSuchContainer(w http.ResponseWriter, r *http.Request) {
	ref := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/containers/"), "/json")
	//lint:ignore ST1005 Docker's own wording, which the docker CLI matches
	writeError(w, errdefs.NewNotFound(fmt.Errorf("No such container: %s", ref)))
}

func (s *Server) volumeInspect(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	v, err := s.cfg.Containers.Volume(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, v)
}

func (s *Server) volumeCreate(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	var req mvolume.CreateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("bad volume request: %w", err)))
		return
	}
	if len(req.DriverOpts) > 0 {
		writeError(w, errdefs.NewNotImplemented(errors.New("volume driver options (-o): Flick's volumes are directories under its data root")))
		return
	}
	v, err := s.cfg.Containers.CreateVolume(req.Name, req.Driver)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

// Networks: Flick has none, host and (unless the daemon runs --bridge none)
// the default bridge; user-defined networks are out of scope.
func (s *Server) networkList(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	out := []mnetwork.Inspect{}
	for _, n := range s.cfg.Containers.Networks() {
		if names := f["name"]; len(names) > 0 && !anyOf(names, func(x string) bool { return strings.Contains(n.Name, x) }) {
			continue
		}
		if ids := f["id"]; len(ids) > 0 && !anyOf(ids, func(x string) bool { return strings.HasPrefix(n.ID, x) }) {
			continue
		}
		if ds := f["driver"]; len(ds) > 0 && !anyOf(ds, func(x string) bool { return x == n.Driver }) {
			continue
		}
		out = append(out, n)
	}
	writeJSON(w, 200, out)
}

func (s *Server) networkInspect(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	id := r.PathValue("id")
	for _, n := range s.cfg.Containers.Networks() {
		if n.ID == id || n.Name == id {
			writeJSON(w, 200, n)
			return
		}
	}
	writeError(w, errdefs.NewNotFound(fmt.Errorf("network %s not found", id)))
}

func (s *Server) networkPrune(w http.ResponseWriter, _ *http.Request) {
	// The three networks are built in: nothing to prune.
	writeJSON(w, 200, mnetwork.PruneReport{NetworksDeleted: []string{}})
}

func (s *Server) containerStats(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	q := r.URL.Query()
	stream := q.Get("stream") == "" || boolParam(q.Get("stream"))
	if boolParam(q.Get("one-shot")) {
		stream = false
	}
	started := false
	enc := json.NewEncoder(w)
	err := s.cfg.Containers.Stats(r.Context(), r.PathValue("id"), stream, func(st mcontainer.StatsResponse) error {
		if !started {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			started = true
		}
		if err := enc.Encode(st); err != nil {
			return err
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		return nil
	})
	if err != nil && !started {
		writeError(w, err)
	}
}

func (s *Server) containerTop(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	top, err := s.cfg.Containers.Top(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, top)
}

func (s *Server) containerPrune(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	list, err := s.cfg.Containers.List()
	if err != nil {
		writeError(w, err)
		return
	}
	cf, err := newContainerFilter(r.URL.Query().Get("filters"), pruneFilterKeys, list)
	if err != nil {
		writeError(w, err)
		return
	}
	rep, err := s.cfg.Containers.Prune(r.Context(), cf.match)
	if err != nil {
		writeError(w, err)
		return
	}
	if rep.ContainersDeleted == nil {
		rep.ContainersDeleted = []string{}
	}
	writeJSON(w, 200, rep)
}

func (s *Server) volumeList(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	for k := range f {
		switch k {
		case "dangling", "name", "driver", "label":
		default:
			writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("invalid filter '%s'", k)))
			return
		}
	}
	vols, err := s.cfg.Containers.Volumes()
	if err != nil {
		writeError(w, err)
		return
	}
	out := []mvolume.Volume{}
	for _, v := range vols {
		if d, ok := f.one("dangling"); ok && (d == "true" || d == "1") != (len(s.cfg.Containers.VolumeUsers(v.Name)) == 0) {
			continue
		}
		if ns := f["name"]; len(ns) > 0 && !anyOf(ns, func(n string) bool { return strings.Contains(v.Name, n) }) {
			continue
		}
		if ds := f["driver"]; len(ds) > 0 && !anyOf(ds, func(d string) bool { return d == v.Driver }) {
			continue
		}
		if len(f["label"]) > 0 {
			continue // Flick's volumes carry no labels
		}
		out = append(out, v)
	}
	writeJSON(w, 200, mvolume.ListResponse{Volumes: out, Warnings: []string{}})
}

func (s *Server) volumeDelete(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	if err := s.cfg.Containers.RemoveVolume(r.PathValue("name"), boolParam(r.URL.Query().Get("force"))); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// volumePrune removes unused anonymous volumes, and named ones with the
// all=true filter (docker volume prune -a), as Docker since API 1.42.
func (s *Server) volumePrune(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	for k := range f {
		if k != "all" {
			writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("invalid filter '%s' (Flick's volume prune takes all=true)", k)))
			return
		}
	}
	all, _ := f.one("all")
	rep, err := s.cfg.Containers.PruneVolumes(all == "true" || all == "1")
	if err != nil {
		writeError(w, err)
		return
	}
	if rep.VolumesDeleted == nil {
		rep.VolumesDeleted = []string{}
	}
	writeJSON(w, 200, rep)
}

func (s *Server) execRoutes() {
	m := s.mux
	m.HandleFunc("POST /containers/{id}/exec", s.execCreate)
	m.HandleFunc("POST /exec/{id}/start", s.execStart)
	m.HandleFunc("POST /exec/{id}/resize", s.execResize)
	m.HandleFunc("GET /exec/{id}/json", s.execInspect)
}

func (s *Server) execCreate(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	var req mcontainer.ExecCreateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("bad exec request: %w", err)))
		return
	}
	id, err := s.cfg.Containers.CreateExec(r.PathValue("id"), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"Id": id})
}

func (s *Server) execInspect(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	e, err := s.cfg.Containers.GetExec(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, e.Inspect())
}

func (s *Server) execResize(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	h, _ := strconv.Atoi(r.URL.Query().Get("h"))
	wd, _ := strconv.Atoi(r.URL.Query().Get("w"))
	if err := s.cfg.Containers.ResizeExec(r.PathValue("id"), uint16(h), uint16(wd)); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(200)
}

// frameWriter multiplexes one stream into Docker's framed format.
type frameWriter struct {
	mu     *sync.Mutex
	w      *bufio.ReadWriter
	stream string
}

func (f frameWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := writeFrame(f.w, f.stream, p); err != nil {
		return 0, err
	}
	return len(p), f.w.Flush()
}

type flushWriter struct {
	mu *sync.Mutex
	w  *bufio.ReadWriter
}

func (f flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}

func (s *Server) execStart(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	var req mcontainer.ExecStartRequest
	json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req)
	e, err := s.cfg.Containers.GetExec(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if req.Detach {
		go s.cfg.Containers.StartExec(context.Background(), e.ID, container.ExecIO{Stdout: io.Discard, Stderr: io.Discard})
		w.WriteHeader(200)
		return
	}
	tty := e.Config.Tty
	conn, buf, ok := hijack(w, r, tty)
	if !ok {
		return
	}
	defer conn.Close()
	var mu sync.Mutex
	sio := container.ExecIO{}
	if req.ConsoleSize != nil {
		sio.ConsoleSize = *req.ConsoleSize
	}
	if tty {
		sio.Stdout = flushWriter{&mu, buf}
	} else {
		sio.Stdout, sio.Stderr = frameWriter{&mu, buf, "stdout"}, frameWriter{&mu, buf, "stderr"}
	}
	if e.Config.AttachStdin {
		sio.Stdin = buf.Reader
	}
	code, err := s.cfg.Containers.StartExec(context.Background(), e.ID, sio)
	if err != nil {
		frameWriter{&mu, buf, "stderr"}.Write([]byte("flick: " + err.Error() + "\n"))
	}
	s.log.Debug("exec ended", "exec", e.ID, "code", code, "err", err)
}

// events streams container events (docker events); filters: type,
// container (name or ID), event; until ends the stream.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if !s.containers(w) {
		return
	}
	var filters map[string]map[string]bool
	if f := r.URL.Query().Get("filters"); f != "" {
		var raw map[string]any
		if err := json.Unmarshal([]byte(f), &raw); err != nil {
			writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("invalid filters: %w", err)))
			return
		}
		filters = map[string]map[string]bool{}
		for k, v := range raw {
			filters[k] = map[string]bool{}
			switch vv := v.(type) {
			case map[string]any:
				for x := range vv {
					filters[k][x] = true
				}
			case []any:
				for _, x := range vv {
					if str, ok := x.(string); ok {
						filters[k][str] = true
					}
				}
			}
		}
	}
	var until time.Time
	if u := r.URL.Query().Get("until"); u != "" {
		if t, err := unixTime(u); err == nil {
			until = t
		}
	}
	match := func(m mevents.Message) bool {
		if f := filters["type"]; len(f) > 0 && !f[string(m.Type)] {
			return false
		}
		if f := filters["event"]; len(f) > 0 && !f[string(m.Action)] {
			return false
		}
		if f := filters["container"]; len(f) > 0 && !f[m.Actor.ID] && !f[m.Actor.Attributes["name"]] && !f[m.Actor.ID[:12]] {
			return false
		}
		return true
	}
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := unixTime(v)
		if err != nil {
			writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("invalid since %q: want a Unix time", v)))
			return
		}
		since = t
	}
	past, c, cancel := s.cfg.Containers.SubscribeSince(since)
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(200)
	enc := json.NewEncoder(w)
	// The kept events first (docker events --since: the last 1,024).
	for _, m := range past {
		if !until.IsZero() && m.TimeNano > until.UnixNano() {
			break
		}
		if match(m) && enc.Encode(m) != nil {
			return
		}
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	var stop <-chan time.Time
	if !until.IsZero() {
		stop = time.After(time.Until(until))
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-stop:
			return
		case m := <-c:
			if !until.IsZero() && m.TimeNano > until.UnixNano() {
				return
			}
			if !match(m) {
				continue
			}
			if enc.Encode(m) != nil {
				return
			}
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
	}
}

func macOf(s string) mnetwork.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return nil
	}
	return mnetwork.HardwareAddr(hw)
}

// hijack takes over the connection for a raw stream, as Docker's attach
// and exec start do: 101 UPGRADED when the client asked to upgrade, else
// 200 with the stream as the body; multiplexed frames unless tty.
func hijack(w http.ResponseWriter, r *http.Request, tty bool) (net.Conn, *bufio.ReadWriter, bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeError(w, fmt.Errorf("connection cannot be hijacked"))
		return nil, nil, false
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return nil, nil, false
	}
	ct := "application/vnd.docker.multiplexed-stream"
	if tty {
		ct = "application/vnd.docker.raw-stream"
	}
	if r.Header.Get("Upgrade") != "" {
		fmt.Fprintf(buf, "HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nApi-Version: %s\r\n\r\n", ct, APIVersion)
	} else {
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nApi-Version: %s\r\n\r\n", ct, APIVersion)
	}
	buf.Flush()
	return conn, buf, true
}
