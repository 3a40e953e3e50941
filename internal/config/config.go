// Package config is the daemon's configuration: defaults, the optional YAML
// file and flags, validated once and never mutated after.
//
// Every key in the file has a flag of the same name (dockerd's names where the
// two overlap, so a dockerd user's habits carry over). Precedence: flag given on
// the command line > config file > default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
	"go.yaml.in/yaml/v3"
)

// Default locations.
const (
	DefaultConfigFile = "/etc/flick/config.yaml"
	DefaultDataRoot   = "/var/lib/flick"
	DefaultSocket     = "/run/flick/flick.sock"
	DefaultHost       = "unix://" + DefaultSocket
)

// Daemon is the daemon's configuration. The yaml names are the flag names.
type Daemon struct {
	DataRoot               string       `yaml:"data-root"`
	Hosts                  []string     `yaml:"hosts"`
	InsecureRegistries     []string     `yaml:"insecure-registries"`
	CertsDir               string       `yaml:"certs-dir"`
	LogLevel               string       `yaml:"log-level"`
	LogFormat              string       `yaml:"log-format"`
	MaxConcurrentDownloads int          `yaml:"max-concurrent-downloads"`
	MaxDownloadAttempts    int          `yaml:"max-download-attempts"`
	MinFreeSpace           string       `yaml:"min-free-space"`
	AllowLayerDevices      bool         `yaml:"allow-layer-devices"`
	SyncMode               durable.Mode `yaml:"sync-mode"`
	SocketGroup            string       `yaml:"group"`
	Bridge                 string       `yaml:"bridge"`        // bridge for containers' default network; "none" disables it
	BridgeSubnet           string       `yaml:"bridge-subnet"` // its subnet; the gateway is .1
	WarmMonitors           int          `yaml:"warm-monitors"` // container monitors kept started, with their init, ahead of need
	Reflex                 `yaml:",inline"`
}

// Defaults returns the built-in configuration.
func Defaults() Daemon {
	return Daemon{
		DataRoot:               DefaultDataRoot,
		Hosts:                  []string{DefaultHost},
		CertsDir:               "/etc/docker/certs.d",
		LogLevel:               "info",
		LogFormat:              "text",
		MaxConcurrentDownloads: 3,
		MaxDownloadAttempts:    5,
		MinFreeSpace:           "64MiB",
		SyncMode:               durable.ModeSyncFS,
		SocketGroup:            "flick",
		Bridge:                 "flick0",
		BridgeSubnet:           "172.30.0.0/16",
		WarmMonitors:           1,
		Reflex:                 ReflexDefaults(),
	}
}

// Load reads a YAML file over d. A missing file is fine only when it is the
// default path (explicit=false). Unknown keys are errors, so a typo is not
// silently ignored.
func Load(d Daemon, path string, explicit bool) (Daemon, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return d, nil
	}
	if err != nil {
		return d, errdefs.NewInvalidArgument(fmt.Errorf("config file: %w", err))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil && !errors.Is(err, io.EOF) {
		return d, errdefs.NewInvalidArgument(fmt.Errorf("config file %s: %w (keys are the daemon's flag names: see 'flick daemon --help')", path, err))
	}
	return d, nil
}

// Validate checks d and returns it with paths cleaned.
func (d Daemon) Validate() (Daemon, error) {
	if d.DataRoot == "" || !filepath.IsAbs(d.DataRoot) {
		return d, errdefs.NewInvalidArgument(fmt.Errorf("data-root must be an absolute path, got %q", d.DataRoot))
	}
	d.DataRoot = filepath.Clean(d.DataRoot)
	if len(d.Hosts) == 0 {
		return d, errdefs.NewInvalidArgument(errors.New("at least one host (-H unix:///path) is required"))
	}
	for _, h := range d.Hosts {
		if _, err := SocketPath(h); err != nil {
			return d, err
		}
	}
	switch strings.ToLower(d.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return d, errdefs.NewInvalidArgument(fmt.Errorf("log-level must be debug, info, warn or error, got %q", d.LogLevel))
	}
	if d.LogFormat != "text" && d.LogFormat != "json" {
		return d, errdefs.NewInvalidArgument(fmt.Errorf("log-format must be text or json, got %q", d.LogFormat))
	}
	if d.MaxConcurrentDownloads < 1 || d.MaxConcurrentDownloads > 64 {
		return d, errdefs.NewInvalidArgument(fmt.Errorf("max-concurrent-downloads must be 1..64, got %d", d.MaxConcurrentDownloads))
	}
	if d.MaxDownloadAttempts < 1 {
		return d, errdefs.NewInvalidArgument(fmt.Errorf("max-download-attempts must be at least 1, got %d", d.MaxDownloadAttempts))
	}
	if _, err := d.MinFreeBytes(); err != nil {
		return d, err
	}
	if _, err := durable.NewSyncer(d.SyncMode); err != nil {
		return d, errdefs.NewInvalidArgument(err)
	}
	if d.WarmMonitors < 0 || d.WarmMonitors > 8 {
		return d, errdefs.NewInvalidArgument(fmt.Errorf("warm-monitors must be 0..8, got %d", d.WarmMonitors))
	}
	if d.Bridge != "none" {
		if _, err := netip.ParsePrefix(d.BridgeSubnet); err != nil {
			return d, errdefs.NewInvalidArgument(fmt.Errorf("bridge-subnet %q: want a prefix like 172.30.0.0/16", d.BridgeSubnet))
		}
	}
	if err := d.Reflex.Validate(); err != nil {
		return d, err
	}
	return d, nil
}

// MinFreeBytes parses MinFreeSpace ("64MiB", "1GB").
func (d Daemon) MinFreeBytes() (int64, error) {
	n, err := parseSize(d.MinFreeSpace)
	if err != nil {
		return 0, errdefs.NewInvalidArgument(fmt.Errorf("min-free-space: %w", err))
	}
	return n, nil
}

// SocketPath extracts the socket path from a unix:// host.
func SocketPath(host string) (string, error) {
	p, ok := strings.CutPrefix(host, "unix://")
	if !ok || !filepath.IsAbs(p) {
		return "", errdefs.NewInvalidArgument(fmt.Errorf("host %q: only unix sockets are supported (unix:///path/to/flick.sock); TCP would expose root on the network", host))
	}
	return p, nil
}
