package cli

import (
	"log/slog"
	"os/signal"
	"strings"
	"syscall"

	"github.com/flick-edge/flick/internal/config"
	"github.com/flick-edge/flick/internal/daemon"
	"github.com/flick-edge/flick/internal/durable"
	"github.com/spf13/cobra"
)

func (a *app) daemonCmd() *cobra.Command {
	def := config.Defaults()
	var (
		cfg        = def
		configFile string
		syncMode   string
	)
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the Flick engine (API on a unix socket)",
		Long: `Run the Flick engine in the foreground. It needs no other service.

Settings come from flags, else from the config file (YAML, keys named like
the flags, e.g. "data-root: /data/flick"), else from the defaults shown.
Several daemons can run side by side with their own --data-root and -H.
SIGTERM or SIGINT stops it cleanly.`,
		Example: `  flick daemon
  flick daemon --data-root /tmp/flick -H unix:///tmp/flick.sock --log-level debug
  flick daemon --insecure-registry registry.lan:5000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			explicit := cmd.Flags().Changed("config-file")
			file, err := config.Load(config.Defaults(), configFile, explicit)
			if err != nil {
				return err
			}
			// Flags given on the command line win over the file.
			merged := file
			fl := cmd.Flags()
			if fl.Changed("data-root") {
				merged.DataRoot = cfg.DataRoot
			}
			if a.host != "" {
				merged.Hosts = []string{a.host}
			}
			if fl.Changed("insecure-registry") {
				merged.InsecureRegistries = cfg.InsecureRegistries
			}
			if fl.Changed("certs-dir") {
				merged.CertsDir = cfg.CertsDir
			}
			if fl.Changed("log-level") {
				merged.LogLevel = cfg.LogLevel
			}
			if fl.Changed("log-format") {
				merged.LogFormat = cfg.LogFormat
			}
			if fl.Changed("max-concurrent-downloads") {
				merged.MaxConcurrentDownloads = cfg.MaxConcurrentDownloads
			}
			if fl.Changed("max-download-attempts") {
				merged.MaxDownloadAttempts = cfg.MaxDownloadAttempts
			}
			if fl.Changed("min-free-space") {
				merged.MinFreeSpace = cfg.MinFreeSpace
			}
			if fl.Changed("allow-layer-devices") {
				merged.AllowLayerDevices = cfg.AllowLayerDevices
			}
			if fl.Changed("sync-mode") {
				merged.SyncMode = durable.Mode(syncMode)
			}
			if fl.Changed("group") {
				merged.SocketGroup = cfg.SocketGroup
			}
			if fl.Changed("bridge") {
				merged.Bridge = cfg.Bridge
			}
			if fl.Changed("bridge-subnet") {
				merged.BridgeSubnet = cfg.BridgeSubnet
			}
			if fl.Changed("warm-monitors") {
				merged.WarmMonitors = cfg.WarmMonitors
			}
			mergeReflex(fl, &merged.Reflex, cfg.Reflex)
			final, err := merged.Validate()
			if err != nil {
				return err
			}
			log := newLogger(a.stderr, final.LogLevel, final.LogFormat)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return daemon.Run(ctx, final, daemon.Build{Version: a.build.Version, GitCommit: a.build.GitCommit}, log, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config-file", config.DefaultConfigFile, "daemon configuration file (YAML)")
	f.StringVar(&cfg.DataRoot, "data-root", def.DataRoot, "root directory of Flick's persistent state")
	f.StringSliceVar(&cfg.InsecureRegistries, "insecure-registry", nil, "insecure registry (host:port or CIDR), as dockerd's: HTTPS without certificate checks, else plain HTTP; loopback registries always are")
	f.StringVar(&cfg.CertsDir, "certs-dir", def.CertsDir, "per-registry TLS trust, as dockerd's: <dir>/<host:port>/*.crt are CAs, client.cert and client.key a client certificate")
	f.StringVarP(&cfg.LogLevel, "log-level", "l", def.LogLevel, "log level: debug, info, warn, error")
	f.StringVar(&cfg.LogFormat, "log-format", def.LogFormat, "log format: text or json")
	f.IntVar(&cfg.MaxConcurrentDownloads, "max-concurrent-downloads", def.MaxConcurrentDownloads, "layers downloaded in parallel per pull")
	f.IntVar(&cfg.MaxDownloadAttempts, "max-download-attempts", def.MaxDownloadAttempts, "attempts per request or layer stream before a pull fails (progress resets the count)")
	f.StringVar(&cfg.MinFreeSpace, "min-free-space", def.MinFreeSpace, "disk space a pull must leave free on the data root")
	f.BoolVar(&cfg.AllowLayerDevices, "allow-layer-devices", false, "create device nodes found in image layers (skipped by default)")
	f.StringVar(&syncMode, "sync-mode", string(def.SyncMode), "how layers are made durable: syncfs (one flush per layer) or fsync (every file)")
	f.StringVar(&cfg.SocketGroup, "group", def.SocketGroup, "group given access to the API socket, if it exists")
	f.StringVar(&cfg.Bridge, "bridge", def.Bridge, "bridge for containers' default network (created on first use); \"none\": containers get loopback only")
	f.StringVar(&cfg.BridgeSubnet, "bridge-subnet", def.BridgeSubnet, "subnet of the bridge network (gateway .1)")
	f.IntVar(&cfg.WarmMonitors, "warm-monitors", def.WarmMonitors, "container monitors kept started ahead of need, each with its init waiting in fresh namespaces: a start skips two process starts; in a burst of starts up to twice as many are kept until 30 s pass without one finding none ready (0 turns it off; each costs about 2 MiB of private memory while it waits)")
	reflexFlags(f, &cfg.Reflex, def.Reflex)
	return cmd
}

func newLogger(w interface{ Write([]byte) (int, error) }, level, format string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(strings.ToUpper(level)))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
