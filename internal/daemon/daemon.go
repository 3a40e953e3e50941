// Package daemon is the only place that knows every component: it builds them
// in order (lock, metadata, stores, registry client, puller, API), runs start-up
// cleanup, serves the API and owns shutdown.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flick-edge/flick/internal/archive"
	"github.com/flick-edge/flick/internal/config"
	"github.com/flick-edge/flick/internal/container"
	"github.com/flick-edge/flick/internal/content"
	"github.com/flick-edge/flick/internal/dockerapi"
	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/helper"
	"github.com/flick-edge/flick/internal/image"
	"github.com/flick-edge/flick/internal/metadata"
	"github.com/flick-edge/flick/internal/network"
	"github.com/flick-edge/flick/internal/pull"
	"github.com/flick-edge/flick/internal/registry"
	"github.com/flick-edge/flick/internal/snapshot"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Build identifies the binary.
type Build struct {
	Version   string
	GitCommit string
}

// Run runs the daemon until ctx is done, then shuts down cleanly. ready, if not
// nil, is closed once the API is being served.
func Run(ctx context.Context, cfg config.Daemon, build Build, log *slog.Logger, ready chan<- struct{}) error {
	if err := durable.MkdirAll(cfg.DataRoot, 0o711); err != nil {
		return fmt.Errorf("create data root: %w", err)
	}
	unlock, err := lock(cfg.DataRoot)
	if err != nil {
		return err
	}
	defer unlock()

	meta, err := metadata.Open(filepath.Join(cfg.DataRoot, "meta.db"))
	if err != nil {
		return err
	}
	defer meta.Close()
	cs, err := content.Open(filepath.Join(cfg.DataRoot, "content"))
	if err != nil {
		return err
	}
	syncer, err := durable.NewSyncer(cfg.SyncMode)
	if err != nil {
		return err
	}
	ss, err := snapshot.Open(filepath.Join(cfg.DataRoot, "snapshots"), syncer)
	if err != nil {
		return err
	}
	reg, err := registry.New(registry.Options{
		Insecure:    cfg.InsecureRegistries,
		CertsDir:    cfg.CertsDir,
		MaxAttempts: cfg.MaxDownloadAttempts,
		UserAgent:   "flick/" + build.Version,
		Logger:      log.With("component", "registry"),
	})
	if err != nil {
		return err
	}
	reserve, err := cfg.MinFreeBytes()
	if err != nil {
		return err
	}
	puller := pull.New(pull.Config{
		Registry: reg, Content: cs, Snapshots: ss, Meta: meta,
		Concurrency: cfg.MaxConcurrentDownloads,
		Archive:     archive.Options{AllowDevices: cfg.AllowLayerDevices, WriteBehind: 2 << 20},
		Reserve:     reserve,
		Logger:      log.With("component", "pull"),
	})
	// Layers are held by pulls in flight and by containers built on them.
	var ctrs *container.Manager
	leased := func(d digest.Digest) bool { return puller.Leased(d) || (ctrs != nil && ctrs.UsesLayer(d)) }
	images := image.New(meta, cs, ss, leased, log.With("component", "image"))
	helpers, err := helper.Install(filepath.Join(cfg.DataRoot, "helpers"))
	var helpersErr error
	if err != nil {
		// Containers still run, from helpers in memory (their size in
		// unevictable memory) until a restart finds room.
		log.Warn("container helpers not installed on the data root; running them from memory", "err", err)
		if helpers, err = helper.InMemory(); err != nil {
			helpersErr = fmt.Errorf("container helpers unavailable: %w", err)
			log.Error("containers cannot run", "err", helpersErr)
		}
	}
	ctrs, err = container.New(container.Config{Root: filepath.Join(cfg.DataRoot, "containers"), Volumes: filepath.Join(cfg.DataRoot, "volumes"),
		Images: images, Snapshots: ss, Logger: log.With("component", "container"), Network: bridgeNetwork(cfg, log),
		WarmMonitors: cfg.WarmMonitors, MonitorBinary: helpers.Monitor, InitBinary: helpers.Init, HelpersErr: helpersErr})
	if err != nil {
		return err
	}
	defer ctrs.Close()
	images.SetUsedBy(ctrs.ImageUser)
	// Start-up cleanup: staging was emptied by snapshot.Open; now drop layer
	// directories and blobs that no record accounts for (leftovers of a cut).
	if n, err := images.CleanOrphans(ctx); err != nil {
		log.Warn("start-up cleanup failed", "err", err)
	} else if n > 0 {
		log.Info("start-up cleanup reclaimed space", "bytes", n)
	}
	if n, err := puller.CleanDeltas(7 * 24 * time.Hour); err != nil {
		log.Warn("start-up cleanup of delta downloads failed", "err", err)
	} else if n > 0 {
		log.Info("start-up cleanup removed stale delta downloads", "bytes", n)
	}
	// Adopt containers whose monitors kept running; start by restart policy
	// those the host stopped; remove --rm containers as they exit.
	ctrs.Recover(ctx)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go ctrs.Watch(watchCtx)
	go trimWhenQuiet(watchCtx, trimEvery, func() { trim(log) })

	api := dockerapi.New(dockerapi.Config{
		Images: images, Puller: puller, Registry: reg, Containers: ctrs, Logger: log.With("component", "api"),
		System: dockerapi.SystemInfo{Version: build.Version, GitCommit: build.GitCommit, DataRoot: cfg.DataRoot,
			InsecureRegs: cfg.InsecureRegistries, CgroupVersion: cgroupVersion(), Started: time.Now()},
	})
	rx, err := startReflex(cfg, reg, log, puller)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rx.close(cctx)
	}()
	srv := &http.Server{Handler: rx.mount(api), ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	var listeners []net.Listener
	for _, h := range cfg.Hosts {
		l, err := listenUnix(h, cfg.SocketGroup, log)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return err
		}
		listeners = append(listeners, l)
	}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errc <- srv.Serve(l) }()
	}
	log.Info("flick daemon started", "version", build.Version, "data-root", cfg.DataRoot, "hosts", strings.Join(cfg.Hosts, ","), "pid", os.Getpid())
	if ready != nil {
		close(ready)
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server failed", "err", err)
		}
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	for _, h := range cfg.Hosts {
		if p, err := config.SocketPath(h); err == nil {
			os.Remove(p)
		}
	}
	log.Info("stopped")
	return nil
}

// lock takes an exclusive lock on the data root, so two daemons never share one.
func lock(root string) (func(), error) {
	p := filepath.Join(root, "flick.lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		pid := strings.TrimSpace(string(b[:n]))
		return nil, errdefs.NewConflict(fmt.Errorf("another flick daemon (pid %s) is using data root %s: stop it, or give this one its own --data-root", pid, root))
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		f.Truncate(0)
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// listenUnix listens on a unix socket with mode 0660, owned by root and the
// socket group if that group exists. A stale socket file is replaced (the
// data-root lock proves no other daemon of ours is using it).
func listenUnix(host, group string, log *slog.Logger) (net.Listener, error) {
	p, err := config.SocketPath(host)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", p, time.Second); err == nil {
		c.Close()
		return nil, errdefs.NewConflict(fmt.Errorf("socket %s is in use by another process: stop it, or pass -H unix:///other/path", p))
	}
	os.Remove(p)
	old := unix.Umask(0o177)
	l, err := net.Listen("unix", p)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", p, err)
	}
	gid := 0
	if group != "" {
		if g, err := user.LookupGroup(group); err == nil {
			gid, _ = strconv.Atoi(g.Gid)
		} else {
			log.Debug("socket group not found; socket stays root-only", "group", group)
		}
	}
	os.Chown(p, 0, gid)
	if err := os.Chmod(p, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func cgroupVersion() string {
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "2"
	}
	return "1"
}

// bridgeNetwork returns a factory that sets up the bridge network on first
// use, so a daemon whose containers never ask for it changes nothing in
// the host's network configuration.
func bridgeNetwork(cfg config.Daemon, log *slog.Logger) func() (*network.Manager, error) {
	if cfg.Bridge == "none" {
		return nil
	}
	var (
		once sync.Once
		mgr  *network.Manager
		err  error
	)
	return func() (*network.Manager, error) {
		once.Do(func() {
			subnet, _ := netip.ParsePrefix(cfg.BridgeSubnet)
			mgr, err = network.New(network.Config{Bridge: cfg.Bridge, Subnet: subnet, StateDir: filepath.Join(cfg.DataRoot, "network")})
			if err == nil {
				log.Info("bridge network ready", "bridge", cfg.Bridge, "subnet", cfg.BridgeSubnet)
			}
		})
		return mgr, err
	}
}
