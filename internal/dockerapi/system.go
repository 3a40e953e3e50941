package dockerapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/container"
	"github.com/flick-edge/flick/internal/image"
	"github.com/flick-edge/flick/internal/snapshot"
	mcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/swarm"
	mvolume "github.com/moby/moby/api/types/volume"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/reference"
	"github.com/flick-edge/flick/internal/registry"
	mimage "github.com/moby/moby/api/types/image"
	mregistry "github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/api/types/system"
	"golang.org/x/sys/unix"
)

func kernelVersion() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func osName() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return runtime.GOOS
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}

func (s *Server) version(w http.ResponseWriter, _ *http.Request) {
	si := s.cfg.System
	writeJSON(w, http.StatusOK, system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "Flick Engine"},
		Version:       si.Version,
		APIVersion:    APIVersion,
		MinAPIVersion: MinAPIVersion,
		Os:            runtime.GOOS,
		Arch:          runtime.GOARCH,
		GitCommit:     si.GitCommit,
		GoVersion:     runtime.Version(),
		KernelVersion: kernelVersion(),
		Components: []system.ComponentVersion{{Name: "Engine", Version: si.Version,
			Details: map[string]string{"ApiVersion": APIVersion, "MinAPIVersion": MinAPIVersion, "GitCommit": si.GitCommit,
				"GoVersion": runtime.Version(), "Os": runtime.GOOS, "Arch": runtime.GOARCH, "KernelVersion": kernelVersion()}}},
	})
}

func memTotal() int64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}

func (s *Server) info(w http.ResponseWriter, _ *http.Request) {
	si := s.cfg.System
	imgs, _ := s.cfg.Images.List()
	host, _ := os.Hostname()
	insecure := []string{"127.0.0.0/8", "::1/128"}
	insecure = append(insecure, si.InsecureRegs...)
	info := system.Info{
		ID:                 "flick",
		Images:             len(imgs),
		Driver:             "overlayfs",
		DriverStatus:       [][2]string{{"Backing Filesystem", "per-layer snapshots"}},
		LoggingDriver:      "local",
		CgroupDriver:       "cgroupfs",
		CgroupVersion:      si.CgroupVersion,
		NGoroutines:        runtime.NumGoroutine(),
		SystemTime:         time.Now().Format(time.RFC3339Nano),
		KernelVersion:      kernelVersion(),
		OperatingSystem:    osName(),
		OSType:             runtime.GOOS,
		Architecture:       unameMachine(),
		IndexServerAddress: "https://index.docker.io/v1/",
		RegistryConfig:     &mregistry.ServiceConfig{IndexConfigs: map[string]*mregistry.IndexInfo{}},
		NCPU:               runtime.NumCPU(),
		MemTotal:           memTotal(),
		DockerRootDir:      si.DataRoot,
		Name:               host,
		ServerVersion:      si.Version,
		Labels:             []string{},
		DefaultRuntime:     "flick",
		Warnings:           []string{},
		SecurityOptions:    []string{},
	}
	for _, c := range insecure {
		info.RegistryConfig.InsecureRegistryCIDRs = appendCIDR(info.RegistryConfig.InsecureRegistryCIDRs, c)
	}
	info.Swarm.LocalNodeState = swarm.LocalNodeStateInactive // swarm is out of scope, never on
	if s.cfg.Containers != nil {
		cs, _ := s.cfg.Containers.List()
		info.Containers = len(cs)
		for _, c := range cs {
			if c.Running() {
				info.ContainersRunning++
			} else {
				info.ContainersStopped++
			}
		}
	}
	writeJSON(w, http.StatusOK, info)
}

func unameMachine() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return runtime.GOARCH
	}
	return unix.ByteSliceToString(u.Machine[:])
}

// legacyDiskUsage is /system/df in the shape API clients up to 1.51 read,
// with the 1.52 ImageUsage summary alongside.
type legacyDiskUsage struct {
	LayersSize int64
	Images     []mimage.Summary
	Containers []any
	Volumes    []any
	BuildCache []any
	ImageUsage *mimage.DiskUsage `json:"ImageUsage,omitempty"`
}

func (s *Server) systemDF(w http.ResponseWriter, _ *http.Request) {
	u, err := s.cfg.Images.DiskUsage()
	if err != nil {
		writeError(w, err)
		return
	}
	out := legacyDiskUsage{LayersSize: u.LayersSize, Images: []mimage.Summary{}, Containers: []any{}, Volumes: []any{}, BuildCache: []any{},
		ImageUsage: &mimage.DiskUsage{TotalCount: int64(len(u.Images)), TotalSize: u.LayersSize}}
	var cs []container.Container
	if s.cfg.Containers != nil {
		cs, _ = s.cfg.Containers.List()
	}
	uses := map[string]int64{}
	for _, c := range cs {
		uses[c.ImageID.String()]++
		rw, _ := snapshot.DiskUsage(filepath.Join(c.Bundle, bundle.UpperDir))
		sum := mcontainer.Summary{ID: c.ID, Names: []string{"/" + c.Name}, Image: c.Image, ImageID: c.ImageID.String(),
			Command: strings.Join(append([]string{c.Path}, c.Args...), " "), Created: c.Created.Unix(),
			State: mcontainer.ContainerState(c.Status()), Status: humanStatus(c), SizeRw: rw, Labels: c.Config.Labels, Mounts: s.cfg.Containers.MountsOf(c)}
		out.Containers = append(out.Containers, sum)
	}
	for _, img := range u.Images {
		sm := summary(img, u.Shared[img.ID])
		sm.Containers = uses[img.ID.String()]
		out.Images = append(out.Images, sm)
		out.ImageUsage.Items = append(out.ImageUsage.Items, sm)
		if sm.Containers == 0 {
			out.ImageUsage.Reclaimable += img.Size - u.Shared[img.ID]
		} else {
			out.ImageUsage.ActiveCount++
		}
	}
	if s.cfg.Containers != nil {
		vols, _ := s.cfg.Containers.Volumes()
		for _, v := range vols {
			n, _ := snapshot.DiskUsage(v.Mountpoint)
			refs := int64(len(s.cfg.Containers.VolumeUsers(v.Name)))
			v.UsageData = &mvolume.UsageData{Size: n, RefCount: refs}
			out.Volumes = append(out.Volumes, v)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// authRequest is the body of POST /auth.
type authRequest struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	ServerAddress string `json:"serveraddress"`
	IdentityToken string `json:"identitytoken"`
}

// auth checks credentials against a registry, as 'docker login' asks the daemon to.
func (s *Server) auth(w http.ResponseWriter, r *http.Request) {
	var req authRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeError(w, errdefs.NewInvalidArgument(fmt.Errorf("invalid login request: %w", err)))
		return
	}
	host := registryHost(req.ServerAddress)
	ref, err := reference.Parse(host + "/flick-login-probe")
	if err != nil {
		writeError(w, err)
		return
	}
	cred := registry.Credentials{Username: req.Username, Password: req.Password, IdentityToken: req.IdentityToken}
	if err := s.cfg.Registry.Login(r.Context(), ref, cred); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, mregistry.AuthResponse{Status: "Login Succeeded"})
}

// registryHost turns what docker login sends ("https://index.docker.io/v1/",
// "myreg:5000") into a registry host.
func registryHost(addr string) string {
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "https://"), "http://")
	addr = strings.TrimSuffix(addr, "/")
	addr, _, _ = strings.Cut(addr, "/")
	if addr == "" || addr == "index.docker.io" || addr == "registry-1.docker.io" {
		return "docker.io"
	}
	return addr
}

func appendCIDR(l []netip.Prefix, s string) []netip.Prefix {
	if p, err := netip.ParsePrefix(s); err == nil {
		return append(l, p)
	}
	return l
}

// systemCheck is GET /flick/v1/system/check: a full verify of the store.
func (s *Server) systemCheck(w http.ResponseWriter, r *http.Request) {
	rep, err := s.cfg.Images.Check(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	if rep.Problems == nil {
		rep.Problems = []image.Problem{}
	}
	writeJSON(w, 200, rep)
}
